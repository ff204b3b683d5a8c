"""A quote weighs what the job's router would weigh, with the slots that router counts on: a
providers file's ``slots`` reaches the forecast's clock and the router's completion estimate alike."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from imagefunnel import quoting
from imagefunnel.cli.demo import DEMO_API_KEY
from imagefunnel.cli.market_serve import providers_file
from imagefunnel.forecast import LIST_PRICE_SIGMA, JobPlan, JobQuote, ProviderOutlook
from imagefunnel.market import MarketServer
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Provider,
    Quote,
)
from imagefunnel.providers.config import build_provider, load_providers_file
from imagefunnel.quoting import frozen_book, quote_job
from imagefunnel.routing import NullLedger, PriceBook, ProviderTraits, RouteContext, Router
from imagefunnel.spec import JobSpec

MODEL = "fal-ai/flux/dev"
SERVICE_S = 2.0  # the scenario's latency the quote is told, and the router's prior below
SPEC = JobSpec.model_validate(
    {
        "name": "slots",
        "use_case": "generic",
        "prompts": ["a lighthouse at dusk"],
        "model": MODEL,
        "deliver": 12,
        "budget_usd": 5.0,
        "deadline_s": 600,
        "concurrency": 6,
    }
)


@pytest.fixture(scope="module")
def market() -> MarketServer:
    with MarketServer("demo") as server:
        yield server  # type: ignore[misc]


def budget_box(market: MarketServer, tmp_path: Path, slots: int | None) -> Provider:
    """The market's ``budget`` endpoint as a providers file lists it, with ``slots:`` when given."""
    (config,) = [c for c in providers_file(market, MODEL).providers if c.name == "budget"]
    text = f"providers:\n  - name: budget\n    protocol: fal\n    base_url: {config.url}\n    models: [{MODEL}]\n"
    if slots is not None:
        text += f"    slots: {slots}\n"
    path = tmp_path / f"providers-{slots}.yaml"
    path.write_text(text)
    (loaded,) = load_providers_file(path).providers
    assert loaded.slots == slots
    return build_provider(loaded, api_key=DEMO_API_KEY)


async def quoted(market: MarketServer, tmp_path: Path, slots: int | None) -> JobQuote:
    provider = budget_box(market, tmp_path, slots)
    return await quote_job(
        SPEC, [provider], pass_rates=frozen_book([]), latencies={"budget": SERVICE_S}, simulations=400
    )


async def queue_wait(market: MarketServer, tmp_path: Path, slots: int | None, *, ahead: int) -> float:
    """The queue wait the job's router expects for a request placed behind ``ahead`` of its own."""
    provider = budget_box(market, tmp_path, slots)
    router = Router([provider], ledger=NullLedger())
    assert router.slots("budget") == slots
    for _ in range(ahead):
        router.capacity.started("budget", MODEL)
    request = GenerationRequest(request_id="r-1", model=MODEL, prompt="a lighthouse")
    try:
        options = await router.options(request, RouteContext(job_id="j", wave=1, deadline=1e12))
    finally:
        await provider.aclose()
    (option,) = options.ranked
    return option.queue_wait_s


async def test_a_providers_file_slots_reaches_the_quote_and_the_router_alike(
    market: MarketServer, tmp_path: Path
) -> None:
    hosted, one, three = [await quoted(market, tmp_path, slots) for slots in (None, 1, 3)]
    # Same purchases; only the clock differs: six requests at once on one slot run one by one.
    assert one.expected_candidates == pytest.approx(three.expected_candidates, rel=0.05)
    assert one.expected_wall_s == pytest.approx(one.expected_candidates * SERVICE_S, rel=0.15)
    assert three.expected_wall_s == pytest.approx(one.expected_wall_s / 3, rel=0.25)
    assert hosted.expected_wall_s < three.expected_wall_s
    # The router, from the same file, counts the same slots: three ahead wait 3 services on one
    # slot, a third of one on three, none where nothing says the provider queues.
    waits = [await queue_wait(market, tmp_path, slots, ahead=3) for slots in (None, 1, 3)]
    service = ProviderTraits().expected_latency_s  # the router's prior until completions teach one
    assert waits == [0.0, pytest.approx(3 * service), pytest.approx(service / 3)]


class _Listed:
    """A provider whose quote is its list price (``quotes_list_price``), or not."""

    def __init__(self, name: str, *, listed: bool) -> None:
        self.name = name
        if listed:
            self.quotes_list_price = True

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({MODEL}), max_width=2048, max_height=2048)

    async def quote(self, request: GenerationRequest) -> Quote:
        return Quote(self.name, request.model, 0.01, PriceUnit.PER_IMAGE, 0.01)

    async def generate(self, request: GenerationRequest) -> Generation:
        raise AssertionError("a quote buys nothing")

    async def health(self) -> Health:
        return Health(ok=True, latency_s=0.0)

    async def aclose(self) -> None:
        return None


async def test_a_quote_gives_each_list_priced_adapter_its_price_risk(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ProviderOutlook] = []
    real = quoting.forecast

    def spy(plan: JobPlan, outlooks: list[ProviderOutlook], **kwargs: Any) -> JobQuote:
        seen.extend(outlooks)
        return real(plan, outlooks, **kwargs)

    monkeypatch.setattr(quoting, "forecast", spy)
    providers: list[Provider] = [_Listed("listed", listed=True), _Listed("live", listed=False)]
    await quote_job(SPEC, providers, pass_rates=frozen_book([]), simulations=200)
    assert {o.provider: o.price_sigma for o in seen} == {"listed": LIST_PRICE_SIGMA, "live": 0.0}
    # Nothing billed yet: the list price can only surprise upwards.
    assert all(o.price_rises_only for o in seen)
    seen.clear()
    prices = PriceBook(clock=time.monotonic)
    prices.observe_charge(Quote("listed", SPEC.model, 0.01, PriceUnit.PER_IMAGE, 0.01), 0.01)
    await quote_job(SPEC, providers, pass_rates=frozen_book([]), simulations=200, prices=prices)
    assert {o.provider: o.price_rises_only for o in seen} == {"listed": False, "live": True}


async def test_a_quote_prices_a_provider_at_the_drift_its_store_learned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[ProviderOutlook] = []
    real = quoting.forecast

    def spy(plan: JobPlan, outlooks: list[ProviderOutlook], **kwargs: Any) -> JobQuote:
        seen.extend(outlooks)
        return real(plan, outlooks, **kwargs)

    monkeypatch.setattr(quoting, "forecast", spy)
    prices = PriceBook(clock=lambda: 0.0)
    prices.observe_charge(Quote("listed", MODEL, 0.01, PriceUnit.PER_IMAGE, 0.01), 0.02)
    providers: list[Provider] = [_Listed("listed", listed=True), _Listed("live", listed=False)]
    await quote_job(SPEC, providers, pass_rates=frozen_book([]), simulations=200, prices=prices)
    assert {o.provider: o.expected_usd / o.quoted_usd for o in seen} == pytest.approx(
        {"listed": 2.0, "live": 1.0}
    )
