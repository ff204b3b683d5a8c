from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from imagefunnel.errors import ProviderError
from imagefunnel.market import MarketServer, load_scenario
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.fal import FalProvider


def test_answers_as_soon_as_started_and_stops_without_leaking_threads() -> None:
    before = set(threading.enumerate())
    server = MarketServer("steady", time_factor=0.1)
    server.start()
    auth = {"Authorization": "Key k"}
    # No wait between start() and the first request: start() returns once the server listens.
    handle = httpx.post(f"{server.base_url('premium')}/fal-ai/flux/dev", json={"prompt": "x"}, headers=auth)
    assert handle.status_code == 200
    time.sleep(0.05)  # 0.1-0.2 scenario seconds of processing at time_factor 0.1
    result = httpx.get(handle.json()["response_url"], headers=auth).json()
    assert httpx.get(result["images"][0]["url"]).status_code == 200  # rendered on a pool thread
    server.stop()
    server.stop()  # idempotent
    assert set(threading.enumerate()) == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)


def test_addresses() -> None:
    server = MarketServer("steady")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        assert server.base_url("budget") == f"{server.url}/budget"
        assert server.url.startswith("http://127.0.0.1:")
        with pytest.raises(KeyError, match="premium, budget"):
            server.base_url("nope")
        with pytest.raises(RuntimeError, match="already started"):
            server.start()


def test_scenario_time_starts_when_the_server_starts() -> None:
    server = MarketServer("steady", time_factor=0.01)
    time.sleep(0.05)  # 5 scenario seconds that must not count
    with server:
        assert server.now_s() < 4.0
        server.advance(100)
        assert server.now_s() >= 100


async def test_demo_market_serves_all_its_providers_through_the_adapter() -> None:
    scenario = load_scenario("demo")
    with MarketServer(scenario, time_factor=0.2) as market:
        async with httpx.AsyncClient() as client:
            providers = [
                FalProvider(
                    name=p.name,
                    base_url=market.base_url(p.name),
                    api_key="fal-test",
                    model="fal-ai/flux/dev",
                    poll_interval_s=0.02,
                    timeout_s=5.0,
                    client=client,
                )
                for p in scenario.providers
            ]
            requests = [
                GenerationRequest(request_id=f"r{i}", model="fal-ai/flux/dev", prompt="headshot", seed=i)
                for i in range(2)
            ]
            outcomes = await asyncio.gather(
                *(p.generate(r) for p in providers for r in requests), return_exceptions=True
            )
        stats = market.stats()
    assert all(isinstance(o, ProviderError) or o.image for o in outcomes)  # type: ignore[union-attr]
    assert sum(s.submitted for s in stats.values()) == len(outcomes)
    quotes = {p.name: p.price_usd_per_mp for p in scenario.providers}
    for record in market.billing():
        assert record.unit_price_usd == quotes[record.provider]
