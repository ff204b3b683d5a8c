"""Passive health per provider: consecutive failures open a cooldown that grows exponentially."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class ProviderHealthState:
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    latency_ewma_s: float | None = None
    last_error: str | None = None


class HealthTracker:
    """Tracks each provider's recent outcomes; a provider in cooldown is not routed to."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        base_cooldown_s: float = 1.0,
        max_cooldown_s: float = 60.0,
        failures_before_cooldown: int = 2,
        latency_alpha: float = 0.3,
    ) -> None:
        self._clock = clock
        self._base = base_cooldown_s
        self._max = max_cooldown_s
        self._threshold = failures_before_cooldown
        self._alpha = latency_alpha
        self._states: dict[str, ProviderHealthState] = {}

    def state(self, provider: str) -> ProviderHealthState:
        return self._states.setdefault(provider, ProviderHealthState())

    def available(self, provider: str) -> bool:
        return self.state(provider).cooldown_until <= self._clock()

    def cooldown_remaining_s(self, provider: str) -> float:
        return max(0.0, self.state(provider).cooldown_until - self._clock())

    def record_success(self, provider: str, latency_s: float) -> None:
        st = self.state(provider)
        st.successes += 1
        st.consecutive_failures = 0
        st.latency_ewma_s = (
            latency_s
            if st.latency_ewma_s is None
            else (1 - self._alpha) * st.latency_ewma_s + self._alpha * latency_s
        )

    def record_failure(self, provider: str, error: str, *, retry_after_s: float | None = None) -> None:
        st = self.state(provider)
        st.failures += 1
        st.consecutive_failures += 1
        st.last_error = error
        if retry_after_s is not None:
            # The provider told us when to come back: believe it, whatever the failure count.
            st.cooldown_until = max(st.cooldown_until, self._clock() + retry_after_s)
        elif st.consecutive_failures >= self._threshold:
            excess = st.consecutive_failures - self._threshold
            st.cooldown_until = self._clock() + min(self._max, self._base * 2**excess)
