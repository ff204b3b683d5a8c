"""A circuit breaker for one (provider, model): trips on a failure *rate*, honours Retry-After.

    CLOSED ──(failures ≥ ratio over ≥ min_requests in the window, or N in a row)──▶ OPEN
    OPEN ──(open time elapsed)──▶ HALF_OPEN ──(trial succeeds)──▶ CLOSED
                                       └──────(trial fails)──▶ OPEN, for twice as long

Written here rather than taken from pybreaker/aiobreaker/purgatory: those count consecutive
failures only, know nothing of Retry-After, and read the wall clock, while the router needs a
failure ratio over a minimum request count, a hold until the provider's own Retry-After, and an
injected clock so a benchmark can run it in virtual time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When to trip, and for how long."""

    failure_ratio: float = 0.5
    min_requests: int = 4
    # Trips even below ``min_requests``: a provider that fails every call of a trickle is down.
    consecutive_failures: int = 3
    window_s: float = 30.0
    open_s: float = 5.0
    max_open_s: float = 120.0
    half_open_trials: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.failure_ratio <= 1.0:
            raise ValueError(f"failure_ratio must be in (0, 1], got {self.failure_ratio}")
        if self.min_requests < 1 or self.consecutive_failures < 1 or self.half_open_trials < 1:
            raise ValueError("min_requests, consecutive_failures and half_open_trials must be ≥ 1")
        if self.window_s <= 0 or self.open_s <= 0 or self.max_open_s < self.open_s:
            raise ValueError("window_s and open_s must be > 0, and max_open_s ≥ open_s")


class CircuitBreaker:
    """State of one breaker; every method is O(1) amortised and never awaits."""

    __slots__ = (
        "_clock",
        "_consecutive",
        "_failures",
        "_open_until",
        "_opened",
        "_settings",
        "_trials",
        "_trips",
        "_window",
    )

    def __init__(self, settings: BreakerSettings, *, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._window: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._consecutive = 0
        self._opened = False
        self._open_until = 0.0
        self._trips = 0  # consecutive trips: each one doubles the open time
        self._trials = 0  # half-open trial requests in flight

    @property
    def state(self) -> BreakerState:
        if not self._opened:
            return BreakerState.CLOSED
        if self._clock() < self._open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self) -> bool:
        """Whether a request may be sent now (half-open: only while a trial slot is free)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and self._trials < self._settings.half_open_trials

    def open_remaining_s(self) -> float:
        return max(0.0, self._open_until - self._clock()) if self._opened else 0.0

    def on_dispatch(self) -> None:
        """A request is about to be sent: in half-open it takes a trial slot."""
        if self.state is BreakerState.HALF_OPEN:
            self._trials += 1

    def record(self, ok: bool) -> None:
        """The outcome of a request sent through this breaker."""
        state = self.state
        if state is BreakerState.OPEN:
            return  # a late answer to a request sent before the trip: the trial decides, not it
        if state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            if ok:
                self._close()
            else:
                self._trip()
            return
        self._add(ok)
        if not ok and self._should_trip():
            self._trip()

    def probe(self, ok: bool) -> None:
        """An active health probe: closes a half-open breaker or re-opens it; counts as a failure
        while closed (a provider that fails its probes is going down before traffic shows it)."""
        state = self.state
        if state is BreakerState.HALF_OPEN:
            if ok:
                self._close()
            else:
                self._trip()
        elif state is BreakerState.CLOSED and not ok:
            self._add(False)
            if self._should_trip():
                self._trip()

    def hold(self, retry_after_s: float) -> None:
        """The provider said when to come back (HTTP 429/503 Retry-After): open until then."""
        now = self._clock()
        current = self._open_until if self.state is BreakerState.OPEN else now
        self._opened = True
        self._open_until = max(current, now + retry_after_s)
        self._trials = 0

    # -- internals ---------------------------------------------------------------------------
    def _add(self, ok: bool) -> None:
        now = self._clock()
        self._window.append((now, ok))
        if ok:
            self._consecutive = 0
        else:
            self._failures += 1
            self._consecutive += 1
        horizon = now - self._settings.window_s
        while self._window and self._window[0][0] < horizon:
            _, old_ok = self._window.popleft()
            if not old_ok:
                self._failures -= 1

    def _should_trip(self) -> bool:
        s = self._settings
        if self._consecutive >= s.consecutive_failures:
            return True
        n = len(self._window)
        return n >= s.min_requests and self._failures >= s.failure_ratio * n

    def _trip(self) -> None:
        s = self._settings
        self._opened = True
        self._open_until = self._clock() + min(s.max_open_s, s.open_s * 2**self._trips)
        self._trips += 1
        self._trials = 0
        self._window.clear()
        self._failures = self._consecutive = 0

    def _close(self) -> None:
        self._opened = False
        self._trips = 0
        self._trials = 0
        self._window.clear()
        self._failures = self._consecutive = 0
