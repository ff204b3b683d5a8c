"""Health per (provider, model): passive signals from every call, active probes, a circuit breaker.

Passive: error rate (EWMA), latency (EWMA and tail quantiles), 429 and timeout counts, and a
:class:`~imagefunnel.routing.breaker.CircuitBreaker` fed by each outcome. Active:
:class:`HealthProber` calls each provider's ``health()`` on an interval; a failed probe counts
against every model of that provider, a passed probe closes a half-open breaker without risking a
paid request on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imagefunnel.errors import ProviderError
from imagefunnel.providers.base import Provider
from imagefunnel.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from imagefunnel.routing.cooldowns import SharedCooldowns
from imagefunnel.routing.latency import LatencyStats

__all__ = ["HealthProber", "HealthTracker", "HealthView", "ProviderHealthState"]


@dataclass(slots=True)
class ProviderHealthState:
    """Mutable counters of one (provider, model); read them through :meth:`HealthTracker.view`."""

    breaker: CircuitBreaker
    latency: LatencyStats
    successes: int = 0
    failures: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    error_rate: float = 0.0
    # "Type: message" (``errors.describe``): a stop reason built from it names the kind of failure.
    last_error: str | None = None
    # How often each kind of failure came ("Type" -> count), and its first message: a stop after a
    # run of failures names what failed most, not only the last one (a timeout as the deadline ran out).
    errors_by_type: dict[str, int] = field(default_factory=dict)
    first_error_by_type: dict[str, str] = field(default_factory=dict)
    last_success_at: float | None = None
    probe_ok: bool | None = None


@dataclass(frozen=True, slots=True)
class HealthView:
    """What a routing policy may know about one (provider, model) right now."""

    state: BreakerState
    error_rate: float
    latency_s: float | None  # EWMA of successful calls
    p95_s: float | None
    p99_s: float | None
    samples: int
    last_success_at: float | None


class HealthTracker:
    """Health of every (provider, model) the router has used; a tripped breaker is not routed to.

    ``shared``: cooldowns this tracker publishes (Retry-After, a trip) and honours from other
    routers (other jobs, other workers); see :mod:`imagefunnel.routing.cooldowns`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        breaker: BreakerSettings | None = None,
        latency_alpha: float = 0.2,
        error_alpha: float = 0.1,
        shared: SharedCooldowns | None = None,
    ) -> None:
        self._clock = clock
        self._shared = shared
        self._settings = breaker or BreakerSettings()
        self._latency_alpha = latency_alpha
        self._error_alpha = error_alpha
        self._states: dict[tuple[str, str], ProviderHealthState] = {}
        self._models: dict[str, set[str]] = {}

    def state(self, provider: str, model: str) -> ProviderHealthState:
        key = (provider, model)
        found = self._states.get(key)
        if found is None:
            found = ProviderHealthState(
                breaker=CircuitBreaker(self._settings, clock=self._clock),
                latency=LatencyStats(alpha=self._latency_alpha),
            )
            self._states[key] = found
            self._models.setdefault(provider, set()).add(model)
        return found

    def available(self, provider: str, model: str) -> bool:
        if not self.state(provider, model).breaker.allows():
            return False
        return self._shared is None or self._shared.remaining_s(provider, model) <= 0.0

    def cooldown_remaining_s(self, provider: str, model: str) -> float:
        local = self.state(provider, model).breaker.open_remaining_s()
        return max(local, self._shared.remaining_s(provider, model)) if self._shared else local

    def view(self, provider: str, model: str) -> HealthView:
        st = self.state(provider, model)
        return HealthView(
            state=st.breaker.state,
            error_rate=st.error_rate,
            latency_s=st.latency.ewma_s,
            p95_s=st.latency.quantile(0.95),
            p99_s=st.latency.quantile(0.99),
            samples=st.latency.count,
            last_success_at=st.last_success_at,
        )

    def on_dispatch(self, provider: str, model: str) -> None:
        self.state(provider, model).breaker.on_dispatch()

    def record_success(self, provider: str, latency_s: float, *, model: str) -> None:
        st = self.state(provider, model)
        st.successes += 1
        st.error_rate -= self._error_alpha * st.error_rate
        st.latency.add(latency_s)
        st.last_success_at = self._clock()
        st.breaker.record(True)

    def record_failure(
        self,
        provider: str,
        error: str,
        *,
        model: str,
        retry_after_s: float | None = None,
        timed_out: bool = False,
        rate_limited: bool = False,
    ) -> None:
        st = self.state(provider, model)
        st.failures += 1
        st.timeouts += timed_out
        st.rate_limited += rate_limited
        st.last_error = error
        kind = error.partition(":")[0]
        st.errors_by_type[kind] = st.errors_by_type.get(kind, 0) + 1
        st.first_error_by_type.setdefault(kind, error)
        st.error_rate += self._error_alpha * (1.0 - st.error_rate)
        if retry_after_s is not None:
            # The provider told us when to come back: believe it, whatever the failure count.
            st.breaker.hold(retry_after_s)
        else:
            st.breaker.record(False)
        self._publish(provider, model, st)

    def record_probe(self, provider: str, ok: bool) -> None:
        """An active probe of ``provider`` (probes are per provider: they apply to all its models)."""
        for model in self._models.get(provider, ()):
            st = self._states[(provider, model)]
            st.probe_ok = ok
            st.breaker.probe(ok)
            self._publish(provider, model, st)

    def _publish(self, provider: str, model: str, st: ProviderHealthState) -> None:
        """Tell the other routers that (provider, model) is cooling, if its breaker is open."""
        if self._shared is not None and st.breaker.state is BreakerState.OPEN:
            self._shared.hold(provider, model, st.breaker.open_remaining_s())


class HealthProber:
    """Probes each provider's ``health()`` every ``interval_s`` in a background task.

    Start it inside a running event loop (``start()``) and stop it with ``aclose()``.
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        health: HealthTracker,
        *,
        interval_s: float = 15.0,
        timeout_s: float = 5.0,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self._providers = list(providers)
        self._health = health
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self.probes = 0

    async def probe_once(self) -> None:
        await asyncio.gather(*(self._probe(provider) for provider in self._providers))

    async def _probe(self, provider: Provider) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await provider.health()
            ok = result.ok
        except (TimeoutError, ProviderError):
            ok = False
        except Exception:
            # A probe is advice: an adapter bug in health() marks the provider down, it never
            # escapes into (and hides the result of) the job the prober runs beside.
            ok = False
        self.probes += 1
        self._health.record_probe(provider.name, ok)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health-prober")

    async def _run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self._interval_s)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
