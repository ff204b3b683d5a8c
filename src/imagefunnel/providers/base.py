"""The provider boundary: one small async protocol and the frozen records that cross it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
