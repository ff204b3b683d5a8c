"""A commercial background-removal API of the emulated market, described as data.

Real services (remove.bg, Photoroom, Clipdrop...) charge $0.02-$0.20 per image, answer in 0.5-5 s,
and fail in their own ways: 5xx and 429s, an "unknown foreground" 400 for photos they cannot read, and
the costly kind, a 200 with a garbage matte (empty, full, inverted, blocky, slid off the subject,
with a halo) that is billed like a good one. Times are scenario seconds, as in the rest of the market.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagefunnel.market.outage import Outage

__all__ = ["CutoutApiProfile", "CutoutBillingRecord", "GarbageMatte"]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class GarbageMatte(StrEnum):
    """What a broken matte of the market looks like (its own implementations, see ``cutout_matte``)."""

    EMPTY = "empty"
    FULL = "full"
    INVERTED = "inverted"
    BLOCKY = "blocky"
    OFFSET = "offset"
    HALO = "halo"


class CutoutApiProfile(BaseModel):
    """How one background-removal API prices, performs and fails. Random draws derive from ``seed``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    seed: int = 0
    usd_per_image: Annotated[float, Field(ge=0.02, le=0.20)]
    # premium: matte refined on the photo; standard: the raw model matte; budget: a small preview
    quality: Literal["premium", "standard", "budget"] = "standard"
    processing_s: tuple[Seconds, Seconds] = (0.5, 1.5)
    error_5xx_rate: Rate = 0.0
    unknown_foreground_rate: Rate = 0.0  # 400 "could not identify foreground" (not billed)
    garbage_rate: Rate = 0.0  # 200 with a broken matte (billed)
    garbage_mix: dict[GarbageMatte, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: dict.fromkeys(GarbageMatte, 1.0)
    )
    rate_limit_per_s: Annotated[float, Field(gt=0.0)] | None = None
    outages: tuple[Outage, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> CutoutApiProfile:
        if self.processing_s[0] > self.processing_s[1]:
            raise ValueError(f"processing_s {self.processing_s} has min > max")
        if self.garbage_rate > 0 and sum(self.garbage_mix.values()) <= 0:
            raise ValueError("garbage_mix needs a positive weight when garbage_rate > 0")
        return self

    def outage_at(self, t_s: float) -> bool:
        return any(outage.covers(t_s) for outage in self.outages)


class CutoutBillingRecord(BaseModel):
    """One billed call: what the API's own invoice would show."""

    model_config = ConfigDict(frozen=True)

    provider: str
    request_id: str
    credits: float
    usd: float
    garbage: GarbageMatte | None
