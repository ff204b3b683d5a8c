"""Timed fault windows of a provider: for a while, a fraction of its requests fail in one way.

Three kinds, each a window ``[start_s, end_s)`` of scenario time and the ``fraction`` of requests
submitted inside it that it hits:

* ``rate_limit``: HTTP 429 with a Retry-After drawn from ``retry_after_s`` (scenario seconds);
* ``server_error``: an HTTP 5xx burst (never billed);
* ``garbage``: HTTP 200 and a finished job whose image is ``black`` or ``truncated`` (billed like
  any other output, as the ``garbage_rate`` outputs are).

A request is judged once, when it is submitted: every window covering that instant draws for it,
refusals (429, 5xx) win over garbage, and among windows of the same sort the first listed wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Fault", "FaultHits", "GarbageFault", "RateLimitFault", "ServerErrorFault", "draw_faults"]

Seconds = Annotated[float, Field(ge=0.0)]


class _Window(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start_s: Seconds
    end_s: Seconds
    # A window that hits nothing is a typo, not a fault: refuse 0.
    fraction: Annotated[float, Field(gt=0.0, le=1.0)]

    @model_validator(mode="after")
    def _ordered(self) -> _Window:
        if self.end_s <= self.start_s:
            raise ValueError(f"fault window ends ({self.end_s}) before it starts ({self.start_s})")
        return self

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


class RateLimitFault(_Window):
    """HTTP 429 on ``fraction`` of the window's requests, each with a Retry-After in the range."""

    kind: Literal["rate_limit"]
    retry_after_s: tuple[Seconds, Seconds]

    @field_validator("retry_after_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range [{value[0]}, {value[1]}] has min > max")
        return value


class ServerErrorFault(_Window):
    """HTTP 5xx on ``fraction`` of the window's requests."""

    kind: Literal["server_error"]


class GarbageFault(_Window):
    """HTTP 200 with a black or truncated image on ``fraction`` of the window's requests."""

    kind: Literal["garbage"]
    garbage: Literal["black", "truncated"]


Fault = Annotated[RateLimitFault | ServerErrorFault | GarbageFault, Field(discriminator="kind")]


@dataclass(frozen=True, slots=True)
class FaultHits:
    """What the windows open at one submission decided for it."""

    refusal: RateLimitFault | ServerErrorFault | None = None
    garbage: GarbageFault | None = None


def draw_faults(faults: Sequence[Fault], t_s: float, rng: np.random.Generator) -> FaultHits:
    """Which of ``faults`` hit a request submitted at ``t_s``; one draw per open window, in order,
    so the outcome of one window never shifts the draws of another."""
    hits = [fault for fault in faults if fault.covers(t_s) and rng.random() < fault.fraction]
    refusal = next((f for f in hits if not isinstance(f, GarbageFault)), None)
    garbage = next((f for f in hits if isinstance(f, GarbageFault)), None)
    return FaultHits(refusal=refusal, garbage=garbage)
