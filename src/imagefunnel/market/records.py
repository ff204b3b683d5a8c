"""The records the market core passes around: requests, jobs, refusals, counters, seeded draws.

Kept apart from ``engine`` (which re-exports them) so the core stays one concern: the clock, the
admission of requests and the bookkeeping over these records.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from imagefunnel.market.images import ImageFormat, Truth

__all__ = ["ImageInput", "Job", "Phase", "ProviderStats", "Rejection", "derive_rng", "job_id"]


def derive_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (str/int/float only: their repr is stable)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def job_id(*parts: object) -> str:
    # Deterministic ids (a UUID4 in form) make whole market runs reproducible, logs included.
    digest = hashlib.blake2b(repr(("id", *parts)).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


class Phase(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ImageInput:
    """What a client asked for, already validated by the protocol layer."""

    prompt: str
    width: int
    height: int
    seed: int | None = None
    image_format: ImageFormat = "png"
    # Token-priced protocols declare here the usage they report; the billing log charges the same.
    input_tokens: int = 0
    output_tokens: int = 0
    # Photos of the subject sent with the request (decoded from the wire); the market renders the
    # person they show. Dropped from the stored job once the subject is known.
    references: tuple[bytes, ...] = ()

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


@dataclass(frozen=True, slots=True)
class Job:
    """One accepted request; its timeline is fixed at submission (scenario seconds)."""

    id: str
    provider: str
    model: str
    input: ImageInput
    submitted_s: float
    queue_s: float
    processing_s: float
    unit_price_usd: float
    fails: bool
    truth: Truth
    deadline_s: float | None = None  # a client's deadline (Cancel-After): cancelled if not done by then
    # A ``connection_reset`` at ``response``: taken and run, but the submitting call's connection is
    # dropped instead of answered.
    reset: bool = False
    # A ``preemption``: the job's machine disappeared at ``done_s`` (it fails; GPU time is billed).
    preempted: bool = False
    # Scenario seconds of the job's ``queue_s``/``processing_s`` that a cold start added.
    cold_start_s: float = 0.0
    # Scenario seconds of its ``queue_s`` spent waiting for one of the provider's ``slots`` (the
    # rest of ``queue_s`` is the provider's own queue delay, drawn once it has a slot).
    slot_wait_s: float = 0.0

    @property
    def started_s(self) -> float:
        return self.submitted_s + self.queue_s

    @property
    def done_s(self) -> float:
        return self.started_s + self.processing_s


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused before it became a job: outage, rate limit, injected 5xx, bad input."""

    status_code: int
    detail: str
    retry_after_s: float | None = None  # wall-clock seconds
    # A ``connection_reset`` at ``request``: the server drops the connection instead of answering.
    reset: bool = False


@dataclass(frozen=True, slots=True)
class ProviderStats:
    submitted: int = 0
    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    defective: int = 0
    garbage: int = 0
    rejected_5xx: int = 0
    rate_limited: int = 0
    outage_rejections: int = 0
    # Requests that arrived while a 429's Retry-After was still running (a polite client sends none).
    before_retry_after: int = 0
    # Connections the server reset (``connection_reset``, before or after taking the request).
    resets: int = 0
    cold_starts: int = 0
    preempted: int = 0
    billed_usd: float = 0.0
