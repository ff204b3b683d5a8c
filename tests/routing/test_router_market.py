"""The router over real loopback HTTP against the emulated market (fal protocol; Replicate for GPU-second billing)."""

import asyncio
from collections.abc import Iterator

import pytest

from imagefunnel.errors import NoProviderAvailable
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.fal import FalProvider
from imagefunnel.providers.pricing import PerGpuSecond
from imagefunnel.providers.replicate import ReplicateProvider
from imagefunnel.routing import CheapestPerCallPolicy, HedgeSettings, NullLedger, RouteContext, Router

MODEL = "fal-ai/flux/dev"


def scenario(*providers: dict[str, object]) -> Scenario:
    base = {"protocol": "fal", "models": [MODEL], "processing_s": [0.5, 0.5]}
    return Scenario.model_validate({"name": "t", "seed": 5, "providers": [{**base, **p} for p in providers]})


@pytest.fixture
def market() -> Iterator[MarketServer]:
    s = scenario(
        # Cheapest, but its queue is long: 100 scenario seconds = 2 s at time_factor 0.02, so the hedge
        # to `fast` surely wins while it is still queued, however loaded the machine is.
        {"name": "slowq", "price_usd_per_mp": 0.01, "queue_s": [100.0, 100.0]},
        {"name": "fast", "price_usd_per_mp": 0.03},
        {"name": "down", "price_usd_per_mp": 0.001, "outages": [{"start_s": 0, "end_s": 10_000}]},
    )
    with MarketServer(s, time_factor=0.02) as server:
        yield server


def adapters(market: MarketServer) -> list[FalProvider]:
    return [
        FalProvider(
            name=p.name, base_url=market.base_url(p.name), api_key="k", model=MODEL, poll_interval_s=0.01
        )
        for p in market.scenario.providers
    ]


def request(i: int) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"r{i}", model=MODEL, prompt="a headshot", width=256, height=256, seed=i
    )


async def test_a_provider_in_an_outage_is_skipped_and_its_breaker_opens(market: MarketServer) -> None:
    providers = adapters(market)
    router = Router(providers, ledger=NullLedger(), policy=CheapestPerCallPolicy())
    ctx = RouteContext(job_id="j", wave=1, deadline=1e12, permits=lambda name: name != "slowq")
    try:
        picks = [(await router.generate(request(i), ctx)).provider for i in range(4)]
    finally:
        for p in providers:
            await p.aclose()
    assert "down" not in picks, "its pricing call answers 503: it never gets a paid request"
    assert not router.health.available("down", MODEL)


async def test_hedge_wins_and_the_loser_is_cancelled_at_the_provider(market: MarketServer) -> None:
    providers = [p for p in adapters(market) if p.name != "down"]
    router = Router(
        providers,
        ledger=NullLedger(),
        policy=CheapestPerCallPolicy(),
        hedging=HedgeSettings(max_fraction=1.0),
    )
    for _ in range(10):  # slowq usually answers in 20 ms: its p95
        router.health.record_success("slowq", 0.02, model=MODEL)
    ctx = RouteContext(job_id="j", wave=1, deadline=1e12)
    try:
        generation = await router.generate(request(0), ctx)
    finally:
        for p in providers:
            await p.aclose()
    assert generation.provider == "fast"
    assert router.hedges == 1
    stats = market.stats()
    assert stats["slowq"].cancelled == 1, "the fal adapter cancelled the queued loser"
    assert [record.provider for record in market.billing()] == ["fast"], "the cancelled loser is not billed"


async def test_a_gpu_second_replicate_request_cut_off_by_the_deadline_is_booked_as_billed() -> None:
    """Over the wire, a Replicate prediction the job's deadline cuts off while it runs is cancelled
    and billed its GPU seconds so far; the router's ledger books that figure (from the cancel
    response), neither 0 (a timeout) nor the quote."""
    model = "black-forest-labs/flux-dev"
    s = Scenario.model_validate(
        {
            "name": "t",
            "seed": 5,
            "providers": [
                {
                    "name": "box",
                    "protocol": "replicate",
                    "models": [model],
                    "pricing": {"unit": "gpu_second", "usd": 0.001},
                    "queue_s": [0.0, 0.0],
                    "processing_s": [1000.0, 1000.0],
                }
            ],
        }
    )
    with MarketServer(s, time_factor=0.02) as server:
        provider = ReplicateProvider(
            name="box",
            base_url=server.base_url("box"),
            api_token="r8_test",
            model=model,
            price=PerGpuSecond.per_second(0.001, expected_s=10.0),
            poll_interval_s=0.01,
            max_poll_interval_s=0.02,
            timeout_s=30.0,
        )
        router = Router([provider], ledger=NullLedger(), policy=CheapestPerCallPolicy())
        loop = asyncio.get_running_loop()
        ctx = RouteContext(job_id="j", wave=1, deadline=loop.time() + 0.5)  # 25 scenario seconds
        try:
            with pytest.raises(NoProviderAvailable):
                await router.generate(
                    GenerationRequest(request_id="r", model=model, prompt="p", width=512, height=512, seed=1),
                    ctx,
                )
        finally:
            await provider.aclose()
        [record] = server.billing()
    assert record.unit == "gpu_second" and record.quantity == pytest.approx(25.0, abs=5.0)
    assert router.spend.charged_usd == pytest.approx(record.usd)
