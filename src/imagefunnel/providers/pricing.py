"""Price models: how a provider bills one generation, as small frozen records.

Every model answers two questions with the same formula:

* ``quote(request)``: the expected USD before the request is sent (what the router compares and the
  budget reserves);
* ``charge(observed)``: the USD after it, from the numbers the provider itself reported
  (output size, GPU seconds, token usage), never from our own stopwatch.

    PerImage(usd=0.04)                               FLUX 1.1 pro on Replicate
    PerMegapixel(usd=0.0027)                         FLUX schnell on Together
    PerGpuSecond(usd_per_hour=5.04, expected_s=3.0)  a Replicate A100 model, a ComfyUI box
    PerToken(output_usd=40.0, input_usd=5.0)         gpt-image-1 (USD per 1M tokens)

A price that moves (a spot GPU's $/hour, a price cut) is a new record: ``dataclasses.replace``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from imagefunnel.providers.base import GenerationRequest, PriceUnit, Quote

__all__ = [
    "GPT_IMAGE_SIZES",
    "Observed",
    "PerGpuSecond",
    "PerImage",
    "PerMegapixel",
    "PerToken",
    "PriceModel",
    "Quality",
    "gpt_image_size",
    "gpt_image_tokens",
    "quote_for",
]

Quality = Literal["low", "medium", "high"]

_PER_MILLION = 1_000_000
_SECONDS_PER_HOUR = 3600
# gpt-image-1 output tokens per image, by size and quality (OpenAI's image-generation cost table);
# "auto" is billed as whatever the model picked, so quotes assume medium.
GPT_IMAGE_SIZES: tuple[tuple[int, int], ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
_GPT_IMAGE_TOKENS: dict[tuple[bool, str], int] = {
    (True, "low"): 272,
    (True, "medium"): 1056,
    (True, "high"): 4160,
    (False, "low"): 408,
    (False, "medium"): 1584,
    (False, "high"): 6240,
}
# A prompt's text tokens, estimated as OpenAI's rule of thumb (about 4 characters per token).
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Observed:
    """What a provider reported about one finished (or cancelled) generation."""

    images: int = 1
    width: int = 0
    height: int = 0
    gpu_seconds: float | None = None  # Replicate metrics.predict_time, ComfyUI execution time
    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_tokens: int = 0


class PriceModel(Protocol):
    """What adapters need from a price: its unit, its unit price, a quote and a charge."""

    unit: ClassVar[PriceUnit]

    @property
    def unit_price_usd(self) -> float: ...

    def quote(self, request: GenerationRequest) -> float: ...

    def charge(self, observed: Observed) -> float: ...


@dataclass(frozen=True, slots=True)
class PerImage:
    """A flat price per output image (Replicate's official models, dall-e)."""

    usd: float
    unit: ClassVar[PriceUnit] = PriceUnit.PER_IMAGE

    def __post_init__(self) -> None:
        _check_price(self.usd)

    @property
    def unit_price_usd(self) -> float:
        return self.usd

    def quote(self, request: GenerationRequest) -> float:
        return self.usd

    def charge(self, observed: Observed) -> float:
        return self.usd * observed.images


@dataclass(frozen=True, slots=True)
class PerMegapixel:
    """A price per output megapixel (fal, Together's FLUX models)."""

    usd: float
    unit: ClassVar[PriceUnit] = PriceUnit.PER_MEGAPIXEL

    def __post_init__(self) -> None:
        _check_price(self.usd)

    @property
    def unit_price_usd(self) -> float:
        return self.usd

    def quote(self, request: GenerationRequest) -> float:
        return self.usd * request.megapixels

    def charge(self, observed: Observed) -> float:
        if observed.width <= 0 or observed.height <= 0:
            raise ValueError("a per-megapixel charge needs the output's width and height")
        return self.usd * observed.width * observed.height / 1e6 * observed.images


@dataclass(frozen=True, slots=True)
class PerGpuSecond:
    """GPU time at ``usd_per_hour`` (a hardware price that may move); quotes assume ``expected_s``."""

    usd_per_hour: float
    expected_s: float
    unit: ClassVar[PriceUnit] = PriceUnit.PER_GPU_SECOND

    def __post_init__(self) -> None:
        _check_price(self.usd_per_hour)
        if not math.isfinite(self.expected_s) or self.expected_s < 0:
            raise ValueError(f"expected_s must be a finite number ≥ 0, got {self.expected_s!r}")

    @classmethod
    def per_second(cls, usd: float, *, expected_s: float) -> PerGpuSecond:
        """From a per-second list price (Replicate lists hardware as $/s)."""
        return cls(usd_per_hour=usd * _SECONDS_PER_HOUR, expected_s=expected_s)

    @property
    def unit_price_usd(self) -> float:
        return self.usd_per_hour / _SECONDS_PER_HOUR

    def quote(self, request: GenerationRequest) -> float:
        return self.unit_price_usd * self.expected_s

    def charge(self, observed: Observed) -> float:
        if observed.gpu_seconds is None:
            raise ValueError("a GPU-second charge needs the GPU seconds the provider reported")
        return self.unit_price_usd * max(0.0, observed.gpu_seconds)


@dataclass(frozen=True, slots=True)
class PerToken:
    """Token-metered images (gpt-image-1): USD per 1M output, text-input and image-input tokens.

    Quotes use ``quality`` and OpenAI's token table for the gpt-image size nearest the request.
    """

    output_usd: float = 40.0
    input_usd: float = 5.0
    input_image_usd: float = 10.0
    quality: Quality = "medium"
    unit: ClassVar[PriceUnit] = PriceUnit.PER_TOKEN

    def __post_init__(self) -> None:
        _check_price(self.output_usd)
        for price in (self.input_usd, self.input_image_usd):
            if not math.isfinite(price) or price < 0:
                raise ValueError(f"token prices must be finite and ≥ 0, got {price!r}")

    @property
    def unit_price_usd(self) -> float:
        return self.output_usd / _PER_MILLION

    def quote(self, request: GenerationRequest) -> float:
        width, height = gpt_image_size(request.width, request.height)
        text_tokens = max(1, math.ceil(len(request.prompt) / _CHARS_PER_TOKEN))
        expected = Observed(
            input_text_tokens=text_tokens, output_tokens=gpt_image_tokens(width, height, self.quality)
        )
        return self.charge(expected)

    def charge(self, observed: Observed) -> float:
        return (
            observed.output_tokens * self.output_usd
            + observed.input_text_tokens * self.input_usd
            + observed.input_image_tokens * self.input_image_usd
        ) / _PER_MILLION


def gpt_image_size(width: int, height: int) -> tuple[int, int]:
    """The gpt-image size whose aspect ratio is nearest ``width``×``height``."""
    aspect = math.log(width / height)
    return min(GPT_IMAGE_SIZES, key=lambda size: abs(math.log(size[0] / size[1]) - aspect))


def gpt_image_tokens(width: int, height: int, quality: Quality) -> int:
    """Output tokens of one gpt-image-1 image of a listed size."""
    if (width, height) not in GPT_IMAGE_SIZES:
        raise ValueError(f"{width}x{height} is not a gpt-image size")
    return _GPT_IMAGE_TOKENS[(width == height, quality)]


def quote_for(price: PriceModel, *, provider: str, model: str, request: GenerationRequest) -> Quote:
    """The ``Quote`` record an adapter returns for ``request``."""
    return Quote(
        provider=provider,
        model=model,
        usd=price.quote(request),
        unit=price.unit,
        unit_price_usd=price.unit_price_usd,
    )


def _check_price(usd: float) -> None:
    if not math.isfinite(usd) or usd <= 0:
        raise ValueError(f"a price must be a finite number > 0, got {usd!r}")
