import pytest

from imagefunnel.providers.base import Generation, GenerationRequest, Health
from imagefunnel.routing import BreakerSettings, BreakerState, HealthProber, HealthTracker
from imagefunnel.routing.latency import LatencyStats
from imagefunnel.testing import MockProvider


def test_latency_stats_ewma_and_quantiles() -> None:
    stats = LatencyStats(alpha=0.5, min_samples=4)
    for value in (1.0, 3.0):
        stats.add(value)
    assert stats.ewma_s == pytest.approx(2.0)
    assert stats.quantile(0.95) is None, "too few samples to mean anything"
    for value in range(1, 101):
        stats.add(float(value))
    assert stats.quantile(0.5) == pytest.approx(49.0, abs=2)
    assert stats.quantile(0.99) == pytest.approx(99.0, abs=1.5)
    stats.add(float("nan"))
    assert stats.count == 102, "a NaN sample is dropped"


def test_error_rate_rises_with_failures_and_decays_with_successes() -> None:
    health = HealthTracker(clock=lambda: 0.0, error_alpha=0.5)
    health.record_failure("p", "boom", model="m")
    assert health.view("p", "m").error_rate == pytest.approx(0.5)
    health.record_success("p", 1.0, model="m")
    assert health.view("p", "m").error_rate == pytest.approx(0.25)
    assert health.view("p", "m").latency_s == pytest.approx(1.0)


def test_breakers_are_per_provider_and_model() -> None:
    health = HealthTracker(clock=lambda: 0.0, breaker=BreakerSettings(consecutive_failures=2))
    for _ in range(2):
        health.record_failure("p", "boom", model="a")
    assert not health.available("p", "a")
    assert health.available("p", "b")


def test_rate_limit_counts_and_holds_for_retry_after() -> None:
    health = HealthTracker(clock=lambda: 0.0)
    health.record_failure("p", "429", model="m", retry_after_s=30.0, rate_limited=True)
    state = health.state("p", "m")
    assert state.rate_limited == 1
    assert health.cooldown_remaining_s("p", "m") == pytest.approx(30.0)


async def test_prober_probes_every_provider_and_feeds_the_breakers() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], breaker=BreakerSettings(consecutive_failures=1, open_s=5.0))

    def never(req: GenerationRequest) -> Generation:
        raise AssertionError("probes must not generate")

    up = MockProvider(never, name="up")
    down = MockProvider(never, name="down", healthy=False)
    for name in ("up", "down"):
        health.state(name, "m")  # the router registers each (provider, model) it routes
    prober = HealthProber([up, down], health, interval_s=1.0)
    await prober.probe_once()
    assert prober.probes == 2
    assert health.available("up", "m")
    assert health.view("down", "m").state is BreakerState.OPEN
    now[0] = 5.0
    down.healthy = True
    await prober.probe_once()
    assert health.view("down", "m").state is BreakerState.CLOSED, "a passed probe closes a half-open breaker"


async def test_a_health_check_that_raises_a_bug_marks_the_provider_down_and_does_not_escape() -> None:
    health = HealthTracker(clock=lambda: 0.0, breaker=BreakerSettings(consecutive_failures=1, open_s=5.0))

    class Broken(MockProvider):
        async def health(self) -> Health:
            raise KeyError("an adapter bug")

    def never(req: GenerationRequest) -> Generation:
        raise AssertionError("probes must not generate")

    health.state("broken", "m")
    prober = HealthProber([Broken(never, name="broken")], health, interval_s=1.0)
    await prober.probe_once()
    assert prober.probes == 1
    assert health.view("broken", "m").state is BreakerState.OPEN
