"""Cooldowns shared between routers: in one process (memory) and across processes (real Redis)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from imagefunnel.errors import SharedStateError
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.fal import FalProvider
from imagefunnel.routing import CheapestPerCallPolicy, HealthTracker, NullLedger, RouteContext, Router
from imagefunnel.routing.cooldowns import LocalCooldowns, SharedCooldowns, open_cooldowns
from imagefunnel.routing.redis_cooldowns import RedisCooldowns

MODEL = "fal-ai/flux/dev"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_hold_lasts_its_time_and_a_shorter_one_never_shortens_it() -> None:
    clock = Clock()
    cooldowns = LocalCooldowns(clock=clock)
    assert cooldowns.remaining_s("p", "m") == 0.0
    cooldowns.hold("p", "m", 30.0)
    cooldowns.hold("p", "m", 5.0)
    clock.now += 10
    assert cooldowns.remaining_s("p", "m") == pytest.approx(20.0)
    assert cooldowns.remaining_s("p", "other-model") == 0.0
    clock.now += 21
    assert cooldowns.remaining_s("p", "m") == 0.0


def test_a_retry_after_or_a_trip_seen_by_one_tracker_is_honoured_by_the_other() -> None:
    clock = Clock()
    shared = LocalCooldowns(clock=clock)
    first, second = (HealthTracker(clock=clock, shared=shared) for _ in range(2))
    first.record_failure("fal", "HTTP 429", model=MODEL, retry_after_s=12.0, rate_limited=True)
    assert not second.available("fal", MODEL)
    assert second.cooldown_remaining_s("fal", MODEL) == pytest.approx(12.0)
    assert second.available("other", MODEL)
    for _ in range(3):  # three in a row trip the breaker (default settings)
        first.record_failure("flaky", "HTTP 503", model=MODEL)
    assert not second.available("flaky", MODEL)
    clock.now += 121  # past the Retry-After and the first trip's open time
    assert second.available("fal", MODEL) and second.available("flaky", MODEL)


def test_without_a_shared_backend_each_tracker_learns_alone() -> None:
    clock = Clock()
    first, second = HealthTracker(clock=clock), HealthTracker(clock=clock)
    first.record_failure("fal", "HTTP 429", model=MODEL, retry_after_s=12.0, rate_limited=True)
    assert not first.available("fal", MODEL) and second.available("fal", MODEL)


def test_backends_are_chosen_by_url(redis_prefix: str) -> None:
    assert isinstance(open_cooldowns("memory://"), LocalCooldowns)
    redis_backend = open_cooldowns("redis://127.0.0.1:6379/0", prefix=redis_prefix)
    assert isinstance(redis_backend, RedisCooldowns)
    redis_backend.close()
    with pytest.raises(SharedStateError, match="expected memory:// or redis://"):
        open_cooldowns("zookeeper://somewhere")


# -- Redis ---------------------------------------------------------------------------------------
@pytest.fixture
def pair(redis_server: str, redis_prefix: str) -> Iterator[tuple[RedisCooldowns, RedisCooldowns]]:
    """Two clients of their own, as two worker processes would have."""
    a, b = (RedisCooldowns(redis_server, prefix=redis_prefix, refresh_s=0.0) for _ in range(2))
    yield a, b
    a.close()
    b.close()


def test_a_hold_in_redis_is_seen_by_another_client_and_keeps_the_longest(
    pair: tuple[RedisCooldowns, RedisCooldowns],
) -> None:
    a, b = pair
    a.hold("fal", MODEL, 40.0)
    b.hold("fal", MODEL, 2.0)  # another worker told a shorter Retry-After: the longer stays
    assert 30.0 < a.remaining_s("fal", MODEL) <= 40.0
    assert 30.0 < b.remaining_s("fal", MODEL) <= 40.0
    assert b.remaining_s("fal", "another-model") == 0.0


def test_a_hold_in_redis_ends_by_itself(pair: tuple[RedisCooldowns, RedisCooldowns]) -> None:
    a, b = pair
    a.hold("fal", MODEL, 0.3)
    assert b.remaining_s("fal", MODEL) > 0.0
    deadline = time.monotonic() + 10
    while b.remaining_s("fal", MODEL) > 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.remaining_s("fal", MODEL) == 0.0


def test_reads_are_cached_for_the_refresh_time(redis_server: str, redis_prefix: str) -> None:
    clock = Clock()
    reader = RedisCooldowns(redis_server, prefix=redis_prefix, refresh_s=1.0, clock=clock)
    writer = RedisCooldowns(redis_server, prefix=redis_prefix, refresh_s=0.0)
    try:
        assert reader.remaining_s("fal", MODEL) == 0.0
        writer.hold("fal", MODEL, 60.0)
        assert reader.remaining_s("fal", MODEL) == 0.0  # its last read is still fresh
        clock.now += 1.0
        assert reader.remaining_s("fal", MODEL) > 50.0
    finally:
        reader.close()
        writer.close()


def test_redis_down_never_fails_routing_and_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    cooldowns = RedisCooldowns("redis://127.0.0.1:1/0", timeout_s=0.2, retry_s=60.0)
    with caplog.at_level(logging.WARNING, logger="imagefunnel.routing.redis_cooldowns"):
        cooldowns.hold("fal", MODEL, 30.0)  # what this process learned still holds here
        assert cooldowns.remaining_s("fal", MODEL) > 20.0
        assert cooldowns.remaining_s("other", MODEL) == 0.0
    assert len([r for r in caplog.records if "shared cooldowns unavailable" in r.message]) == 1
    cooldowns.close()


# -- two routers against the emulated market ------------------------------------------------------
@pytest.fixture
def market() -> Iterator[MarketServer]:
    base = {"protocol": "fal", "models": [MODEL], "processing_s": [0.01, 0.02]}
    scenario = Scenario.model_validate(
        {
            "name": "limits",
            "seed": 2,
            "providers": [
                # One request per 100 scenario seconds: the second gets a 429 with a long Retry-After.
                {**base, "name": "cheap", "price_usd_per_mp": 0.01, "rate_limit_per_s": 0.01},
                {**base, "name": "backup", "price_usd_per_mp": 0.05},
            ],
        }
    )
    with MarketServer(scenario) as server:
        yield server


async def _buy(market: MarketServer, shared: SharedCooldowns | None, request_id: str) -> str:
    providers = [
        FalProvider(
            name=p.name, base_url=market.base_url(p.name), api_key="k", model=MODEL, poll_interval_s=0.01
        )
        for p in market.scenario.providers
    ]
    router = Router(
        providers,
        ledger=NullLedger(),
        policy=CheapestPerCallPolicy(),
        health=HealthTracker(clock=time.monotonic, shared=shared),
    )
    request = GenerationRequest(
        request_id=request_id, model=MODEL, prompt="a mug", width=256, height=256, seed=1
    )
    try:
        return (await router.generate(request, RouteContext(job_id="j", wave=1, deadline=1e12))).provider
    finally:
        for provider in providers:
            await provider.aclose()


async def test_a_429_one_worker_got_keeps_the_other_workers_away(
    market: MarketServer, redis_server: str, redis_prefix: str
) -> None:
    workers = [RedisCooldowns(redis_server, prefix=redis_prefix, refresh_s=0.0) for _ in range(2)]
    try:
        assert await _buy(market, workers[0], "r1") == "cheap"  # takes the only token
        assert await _buy(market, workers[0], "r2") == "backup"  # 429 at cheap, then the fallback
        assert market.stats()["cheap"].rate_limited == 1
        # Another worker, with a router that never saw the 429, goes straight to the backup ...
        assert await _buy(market, workers[1], "r3") == "backup"
        assert market.stats()["cheap"].rate_limited == 1
        # ... whereas a router that shares nothing asks the cheap provider and is told off again.
        assert await _buy(market, None, "r4") == "backup"
        assert market.stats()["cheap"].rate_limited == 2
    finally:
        for w in workers:
            w.close()
