"""Timed fault windows of a provider: for a while, a fraction of its requests fail in one way.

Each kind is a window ``[start_s, end_s)`` of scenario time and the ``fraction`` of requests
submitted inside it that it hits:

* ``rate_limit``: HTTP 429 with a Retry-After drawn from ``retry_after_s`` (scenario seconds);
* ``server_error``: an HTTP 5xx burst (never billed);
* ``garbage``: HTTP 200 and a finished job whose image is ``black`` or ``truncated`` (billed like
  any other output, as the ``garbage_rate`` outputs are);
* ``connection_reset``: the server drops the TCP connection of the submitting call (an RST, no
  HTTP answer). ``at: request``: before it took the request (nothing runs, nothing is billed);
  ``at: response``: after it took it, so the job runs and is billed although the client never
  learnt its id. The client cannot tell the two apart;
* ``cold_start``: the first request after ``idle_s`` without work waits ``extra_s`` more while the
  provider boots (requests arriving during the boot wait for the same boot). Billed as each
  protocol bills it: Replicate counts it as ``starting`` (outside ``predict_time``, unbilled); the
  others run it as part of the job (billed only where the unit is GPU time);
* ``preemption``: the machine running a job disappears after ``at_fraction`` of its processing:
  the job fails, its output is lost, GPU time up to then is billed (any per-output unit is not);
  a synchronous call (OpenAI, Together) gets the HTTP 500 of the API's gateway, which stays up.

And one that is not a window, ``unreachable``: the provider's address refuses connections
(``mode: refused``) or never completes a TCP handshake (``mode: timeout``) for the whole run; the
market serves it on a dead address of its own (``MarketServer.base_url``).

A request is judged once, when it is submitted: every window covering that instant draws for it,
refusals (429, 5xx, a reset before the request was taken) win over everything else, and among
windows of the same sort the first listed wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ColdStartFault",
    "ConnectionResetFault",
    "Fault",
    "FaultHits",
    "GarbageFault",
    "PreemptionFault",
    "RateLimitFault",
    "ServerErrorFault",
    "UnreachableFault",
    "draw_faults",
]

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


def _ordered_range(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"range [{value[0]}, {value[1]}] has min > max")
    return value


class ConnectionResetFault(_Window):
    """The submitting call's TCP connection is reset, before (``request``) or after (``response``)
    the provider took the request."""

    kind: Literal["connection_reset"]
    at: Literal["request", "response"]


class ColdStartFault(_Window):
    """The first request after ``idle_s`` scenario seconds without work waits ``extra_s`` more."""

    kind: Literal["cold_start"]
    fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    idle_s: Seconds
    extra_s: tuple[Seconds, Seconds]

    @field_validator("extra_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _ordered_range(value)


class PreemptionFault(_Window):
    """The job's machine disappears after ``at_fraction`` (a range, 0 to 1) of its processing."""

    kind: Literal["preemption"]
    at_fraction: tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]

    @field_validator("at_fraction")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _ordered_range(value)


class UnreachableFault(BaseModel):
    """For the whole run, the provider's address refuses connections or never answers a handshake."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["unreachable"]
    mode: Literal["refused", "timeout"]

    def covers(self, t_s: float) -> bool:
        return True


Fault = Annotated[
    RateLimitFault
    | ServerErrorFault
    | GarbageFault
    | ConnectionResetFault
    | ColdStartFault
    | PreemptionFault
    | UnreachableFault,
    Field(discriminator="kind"),
]
# The kinds that judge each request as it is submitted (a cold start is the provider's state, an
# unreachable address is the server's): ``draw_faults`` draws for these only.
_DRAWN = (RateLimitFault, ServerErrorFault, GarbageFault, ConnectionResetFault, PreemptionFault)


@dataclass(frozen=True, slots=True)
class FaultHits:
    """What the windows open at one submission decided for it."""

    refusal: RateLimitFault | ServerErrorFault | ConnectionResetFault | None = None
    garbage: GarbageFault | None = None
    # A reset after the request was taken (the job runs; the answer never reaches the client).
    reset: ConnectionResetFault | None = None
    preemption: PreemptionFault | None = None


def draw_faults(faults: Sequence[Fault], t_s: float, rng: np.random.Generator) -> FaultHits:
    """Which of ``faults`` hit a request submitted at ``t_s``; one draw per open window, in order,
    so the outcome of one window never shifts the draws of another."""
    hits = [
        fault
        for fault in faults
        if isinstance(fault, _DRAWN) and fault.covers(t_s) and rng.random() < fault.fraction
    ]
    refusal = next(
        (
            f
            for f in hits
            if isinstance(f, RateLimitFault | ServerErrorFault)
            or (isinstance(f, ConnectionResetFault) and f.at == "request")
        ),
        None,
    )
    return FaultHits(
        refusal=refusal,
        garbage=next((f for f in hits if isinstance(f, GarbageFault)), None),
        reset=next((f for f in hits if isinstance(f, ConnectionResetFault) and f.at == "response"), None),
        preemption=next((f for f in hits if isinstance(f, PreemptionFault)), None),
    )
