"""What the funnel tells an observer (the CLI's progress display, the service's SSE stream)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CandidateScored:
    candidate_id: int
    wave: int
    provider: str
    passed: bool
    reasons: tuple[str, ...]
    passed_total: int
    generated_total: int
    spent_usd: float


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_id: str
    wave: int
    error: str


@dataclass(frozen=True, slots=True)
class WaveStarted:
    wave: int
    size: int
    needed: int
    estimated_pass_rate: float


class FunnelObserver:
    """Override what you need; every hook is a no-op by default."""

    def wave_started(self, event: WaveStarted) -> None:
        return None

    def candidate_scored(self, event: CandidateScored) -> None:
        return None

    def request_failed(self, event: RequestFailed) -> None:
        return None
