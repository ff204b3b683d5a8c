"""The provider boundary: one small async protocol and the frozen records that cross it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable


class PriceUnit(StrEnum):
    """How a provider bills one generation."""

    PER_IMAGE = "image"
    PER_MEGAPIXEL = "megapixel"
    PER_GPU_SECOND = "gpu_second"
    PER_TOKEN = "token"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One image to generate. ``request_id`` doubles as the idempotency key."""

    request_id: str
    model: str
    prompt: str
    width: int = 512
    height: int = 512
    seed: int = 0
    reference_images: tuple[bytes, ...] = ()

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


@dataclass(frozen=True, slots=True)
class Capabilities:
    models: frozenset[str]
    max_width: int = 2048
    max_height: int = 2048
    supports_reference_images: bool = False


@dataclass(frozen=True, slots=True)
class Quote:
    """Expected cost of a request, before it is sent."""

    provider: str
    model: str
    usd: float
    unit: PriceUnit
    unit_price_usd: float


@dataclass(frozen=True, slots=True)
class Generation:
    """A finished generation: the image bytes and what it actually cost."""

    request_id: str
    provider: str
    model: str
    image: bytes
    charged_usd: float
    latency_s: float
    provider_request_id: str
    content_type: str = "image/png"
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    latency_s: float
    detail: str = ""


@runtime_checkable
class Provider(Protocol):
    """What the router needs from a provider adapter.

    ``generate`` raises only ``imagefunnel.errors.ProviderError`` subclasses.
    """

    name: str

    async def capabilities(self) -> Capabilities: ...

    async def quote(self, request: GenerationRequest) -> Quote: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DeclaresSlots(Protocol):
    """A provider that says how many requests it runs at once (the rest wait in its queue): a local
    worker pool its workers, a ComfyUI box one, an adapter whose providers-file entry gives
    ``slots`` that many; ``None``: it does not know (the router learns it from latencies)."""

    @property
    def slots(self) -> int | None: ...


def checked_slots(slots: int | None) -> int | None:
    """``slots`` as an adapter keeps it: a count of at least 1, or ``None`` (unknown)."""
    if slots is not None and slots < 1:
        raise ValueError("slots must be ≥ 1")
    return slots


@dataclass(frozen=True, slots=True)
class Submitted:
    """A request the provider has accepted, named by the provider's own id for it."""

    request_id: str
    provider: str
    provider_request_id: str


OnSubmitted = Callable[[Submitted], None]

# What a re-raised ``CancelledError`` carries: the name ``ProviderError`` uses for the same fact.
_CHARGE_ATTR = "charged_usd"


def carry_charge(exc: BaseException, charged_usd: float) -> None:
    """Attach to a cancellation what the withdrawn request cost, for the router to book; an adapter
    calls it before re-raising, since the caller would otherwise have to guess (the quote)."""
    setattr(exc, _CHARGE_ATTR, charged_usd)


def abandoned_charge(exc: BaseException | None) -> float | None:
    """What a cancelled ``generate`` said its withdrawn request cost (``None``: nothing said)."""
    value = getattr(exc, _CHARGE_ATTR, None)
    return float(value) if isinstance(value, int | float) else None


@runtime_checkable
class Reattachable(Protocol):
    """A provider whose protocol names a request when it accepts it (a queue: fal's request id,
    Replicate's prediction id, ComfyUI's prompt id), so a request cut off by a crash can be fetched
    later instead of bought again.

    ``generate`` calls ``on_submitted`` once the provider has accepted the request, before waiting
    for its result; ``reattach`` follows an accepted request to its end and returns what a
    ``generate`` would have (the charge is the provider's own). Synchronous protocols (OpenAI
    images, Together) only name a request in the answer that carries the image: they have nothing
    to re-attach to, and are not ``Reattachable``.
    """

    name: str

    async def generate(
        self, request: GenerationRequest, *, on_submitted: OnSubmitted | None = None
    ) -> Generation: ...

    async def reattach(self, request: GenerationRequest, provider_request_id: str) -> Generation: ...


# How far before an attempt's intent a ``Findable`` provider's list is searched: the provider's
# clock, which stamps what it lists, and ours differ.
FIND_SKEW = timedelta(seconds=120)


@runtime_checkable
class Findable(Protocol):
    """A queue protocol whose provider lists the requests it took, with what was sent (Replicate's
    ``GET /v1/predictions``, newest first, each with its ``input``; fal's platform API
    ``GET /v1/models/requests/by-endpoint``, ended requests only, each with its ``json_input``,
    so its adapter keeps looking a while for one that may still be running). A request accepted in the
    moment before the ledger recorded its id (a crash between the two) can then be named after the
    fact: ``find_submitted`` returns the id of the one request created since ``since`` whose input
    is ``request``'s, other than those in ``exclude`` (ids the ledger already holds), or ``None``
    when there is none or more than one (a guess could attach another job's image)."""

    name: str

    async def find_submitted(
        self, request: GenerationRequest, *, since: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None: ...
