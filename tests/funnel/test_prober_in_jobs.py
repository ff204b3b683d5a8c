"""A job run through ``run_funnel_job`` (the CLI's and the workers' path) probes its providers'
health while it runs, and stops probing when it ends, delivered or cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.jobs import run_funnel_job
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Capabilities, Generation, GenerationRequest, Health, Provider, Quote
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

MODEL = "fal-ai/flux/dev"
StartMarket = Callable[[Scenario], MarketServer]
MakeScenario = Callable[..., Scenario]


class CountedHealth:
    """A provider whose health() calls are counted; everything else is the wrapped provider's."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.health_calls = 0
        self.closed = False
        self.third_probe = asyncio.Event()  # probing on an interval, not just once

    async def capabilities(self) -> Capabilities:
        return await self.inner.capabilities()

    async def quote(self, request: GenerationRequest) -> Quote:
        return await self.inner.quote(request)

    async def generate(self, request: GenerationRequest) -> Generation:
        return await self.inner.generate(request)

    async def health(self) -> Health:
        assert not self.closed, "probed after the provider was closed"
        self.health_calls += 1
        if self.health_calls == 3:
            self.third_probe.set()
        return await self.inner.health()

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {"prompts": ["a mug"], "use_case": "generic", "deliver": 2, "budget_usd": 5.0}
    return JobSpec.model_validate({**base, "seed": 1, **kw})


def probers() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "health-prober" and not task.done()]


def counted(market: MarketServer) -> list[CountedHealth]:
    return [CountedHealth(provider) for provider in market_providers(market, MODEL)]


async def test_a_job_probes_its_providers_and_stops_when_it_ends(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(
        scenario({"name": "a", "price_usd_per_mp": 0.02}, {"name": "b", "price_usd_per_mp": 0.03})
    )
    providers = counted(market)
    outcome = await run_funnel_job(spec(), providers, store=store, blobs=blobs)
    assert outcome.status == "delivered"
    assert all(p.health_calls >= 1 for p in providers)  # every provider, probed at the job's start
    assert probers() == []
    assert all(p.closed for p in providers)


async def test_a_cancelled_job_leaves_no_prober_running(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    # Each image takes minutes: the job is still buying when it is cancelled.
    market = market_factory(scenario({"name": "slow", "price_usd_per_mp": 0.02, "processing_s": [600, 600]}))
    [provider] = counted(market)
    job = asyncio.ensure_future(
        run_funnel_job(spec(), [provider], store=store, blobs=blobs, probe_interval_s=0.01)
    )
    async with asyncio.timeout(30):
        await provider.third_probe.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert probers() == []
    calls = provider.health_calls
    await asyncio.sleep(0.05)
    assert provider.health_calls == calls and provider.closed


async def test_probing_can_be_switched_off(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(scenario({"name": "a", "price_usd_per_mp": 0.02}))
    providers = counted(market)
    outcome = await run_funnel_job(spec(), providers, store=store, blobs=blobs, probe_interval_s=None)
    assert outcome.status == "delivered" and providers[0].health_calls == 0
