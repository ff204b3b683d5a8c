import asyncio

import pytest

from imagefunnel.bench.sim import SimProvider
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.errors import ConnectionLost, NoProviderAvailable, ProviderUnavailable, RateLimited
from imagefunnel.market.engine import Market
from imagefunnel.market.scenario import Scenario
from imagefunnel.providers.base import GenerationRequest, PriceUnit, abandoned_charge
from imagefunnel.routing import (
    BudgetGuard,
    CheapestPerCallPolicy,
    NullLedger,
    PassRateBook,
    PriceBook,
    RouteContext,
    Router,
)


def market_of(*providers: dict[str, object]) -> Scenario:
    return Scenario.model_validate({"name": "t", "seed": 1, "providers": list(providers)})


FAL = {
    "name": "f",
    "protocol": "fal",
    "models": ["fal-ai/flux/dev"],
    "price_usd_per_mp": 0.02,
    "processing_s": [2, 2],
}


def req(i: int, model: str = "fal-ai/flux/dev") -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", model=model, prompt="p", width=1000, height=1000, seed=i)


def test_generation_takes_market_time_and_charges_what_the_market_bills() -> None:
    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(FAL), clock=loop.time)
        provider = SimProvider(market, "f")
        quote = await provider.quote(req(0))
        generation = await provider.generate(req(0))
        (record,) = market.billing()
        assert quote.unit is PriceUnit.PER_MEGAPIXEL
        return generation.latency_s, generation.charged_usd, record.usd - quote.usd

    latency, charged, drift = run_virtual(main())
    assert latency == pytest.approx(2.0)
    assert charged == pytest.approx(0.02)
    assert drift == pytest.approx(0.0)


def test_outage_and_rate_limits_raise_the_wire_errors() -> None:
    down = {**FAL, "name": "d", "outages": [{"start_s": 0, "end_s": 100}]}
    limited = {**FAL, "name": "l", "rate_limit_per_s": 1}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        market = Market(market_of(down, limited), clock=loop.time)
        with pytest.raises(ProviderUnavailable, match="503"):
            await SimProvider(market, "d").quote(req(0))
        assert not (await SimProvider(market, "d").health()).ok
        first = asyncio.ensure_future(SimProvider(market, "l").generate(req(1)))
        await asyncio.sleep(0)
        with pytest.raises(RateLimited) as caught:
            await SimProvider(market, "l").generate(req(2))
        assert caught.value.retry_after_s == 1
        await first

    run_virtual(main())


@pytest.mark.parametrize(("protocol", "billed"), [("fal", 0), ("together", 1)])
def test_cancelling_follows_the_protocol(protocol: str, billed: int) -> None:
    model = "fal-ai/flux/dev" if protocol == "fal" else "black-forest-labs/FLUX.1-dev"
    profile = {**FAL, "protocol": protocol, "models": [model], "queue_s": [5, 5]}

    async def main() -> int:
        loop = asyncio.get_running_loop()
        market = Market(market_of(profile), clock=loop.time)
        task = asyncio.ensure_future(SimProvider(market, "f").generate(req(0, model)))
        await asyncio.sleep(1)  # still queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        market.advance(60)
        return len(market.billing())

    assert run_virtual(main()) == billed


@pytest.mark.parametrize(("protocol", "live"), [("fal", True), ("replicate", False), ("together", False)])
def test_providers_quote_only_what_their_adapter_can_see(protocol: str, live: bool) -> None:
    """fal publishes its live price; the other adapters quote the configured list price."""
    spec = {**FAL, "protocol": protocol, "price_schedule": [{"after_s": 10, "usd": 0.06}]}
    if protocol == "replicate":
        spec.pop("price_usd_per_mp")
        spec.update(models=["black-forest-labs/flux-dev"], pricing={"unit": "gpu_second", "usd": 0.001})

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(spec), clock=loop.time)
        provider = SimProvider(market, "f")
        before = (await provider.quote(req(0, provider.profile.models[0]))).unit_price_usd
        await asyncio.sleep(11)
        return before, (await provider.quote(req(1, provider.profile.models[0]))).unit_price_usd

    before, after = run_virtual(main())
    assert after == (pytest.approx(0.06) if live else pytest.approx(before))


def test_a_one_slot_provider_serves_first_in_first_out_and_a_cancelled_waiter_is_not_billed() -> None:
    box = {**FAL, "name": "box", "slots": 1}

    async def main() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(box), clock=loop.time)
        provider = SimProvider(market, "box", poll_interval_s=0)
        tasks = [asyncio.ensure_future(provider.generate(req(i))) for i in range(4)]
        await asyncio.sleep(1.0)
        assert provider.waiting == 3
        tasks[2].cancel()  # leaves the queue before it ran
        done = await asyncio.gather(tasks[0], tasks[1], tasks[3])
        return [g.latency_s for g in done], len(market.billing())

    latencies, billed = run_virtual(main())
    assert latencies == pytest.approx([2.0, 4.0, 6.0])
    assert billed == 3


REPLICATE = {
    "name": "r",
    "protocol": "replicate",
    "models": ["black-forest-labs/flux-dev"],
    "pricing": {"unit": "gpu_second", "usd": 0.001},
    "processing_s": [10, 10],
}


@pytest.mark.parametrize(
    ("spec", "cut_at_s"),
    [
        (REPLICATE, 4.0),  # running: the GPU seconds so far are billed
        ({**REPLICATE, "queue_s": [5, 5]}, 2.0),  # still queued: free
        ({**FAL, "processing_s": [5, 5]}, 2.0),  # fal, running: cannot be cancelled, billed whole
        ({**FAL, "queue_s": [5, 5]}, 2.0),  # fal, queued: cancelled, free
        ({**FAL, "protocol": "together", "models": ["black-forest-labs/FLUX.1-dev"]}, 1.0),  # bought
        ({**REPLICATE, "slots": 1}, 4.0),  # the box's first request, running
    ],
)
def test_a_cancelled_request_carries_what_the_market_bills_for_it(
    spec: dict[str, object], cut_at_s: float
) -> None:
    """The adapters say on the cancellation what the withdrawn request costs (Replicate: the GPU
    seconds its cancel response reports); so does the simulation, or the router books a guess."""
    model = spec["models"][0]  # type: ignore[index]

    async def main() -> tuple[float | None, float]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(spec), clock=loop.time)
        task = asyncio.ensure_future(SimProvider(market, str(spec["name"])).generate(req(0, str(model))))
        await asyncio.sleep(cut_at_s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        market.advance(60)
        return abandoned_charge(caught.value), sum(record.usd for record in market.billing())

    reported, billed = run_virtual(main())
    assert reported == pytest.approx(billed)


def test_a_slot_waiter_cancelled_in_the_queue_carries_no_charge() -> None:
    box = {**REPLICATE, "slots": 1}

    async def main() -> float | None:
        loop = asyncio.get_running_loop()
        market = Market(market_of(box), clock=loop.time)
        provider = SimProvider(market, "r")
        first = asyncio.ensure_future(provider.generate(req(0, "black-forest-labs/flux-dev")))
        second = asyncio.ensure_future(provider.generate(req(1, "black-forest-labs/flux-dev")))
        await asyncio.sleep(1)
        second.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await second
        await first
        return abandoned_charge(caught.value)

    assert run_virtual(main()) == 0.0


def test_the_router_books_what_the_market_bills_for_a_gpu_second_request_cut_off_by_the_deadline() -> None:
    """A Replicate request still running when the job's deadline cuts it is billed its GPU seconds
    so far; the router's ledger must say the same, not 0 (the timeout) or the quote."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(REPLICATE), clock=loop.time)
        router = Router(
            [SimProvider(market, "r")],
            ledger=NullLedger(),
            clock=loop.time,
            policy=CheapestPerCallPolicy(),
            pass_rates=PassRateBook(clock=loop.time),
            prices=PriceBook(clock=loop.time),
        )
        ctx = RouteContext(
            job_id="j", wave=1, deadline=loop.time() + 4.0, budget=BudgetGuard(10.0), use_case="x"
        )
        with pytest.raises(NoProviderAvailable):
            await router.generate(req(0, "black-forest-labs/flux-dev"), ctx)
        market.advance(60)
        return router.spend.charged_usd, sum(record.usd for record in market.billing())

    ledger, billed = run_virtual(main())
    assert billed > 0
    assert ledger == pytest.approx(billed)


def test_a_reset_submit_is_found_again_where_the_protocol_lists_what_it_took() -> None:
    reset = [{"kind": "connection_reset", "at": "response", "start_s": 0, "end_s": 1e9, "fraction": 1.0}]
    listed = {**FAL, "name": "listed", "faults": reset}
    unlisted = {
        **FAL,
        "name": "unlisted",
        "protocol": "together",
        "models": ["black-forest-labs/FLUX.1-schnell"],
        "faults": reset,
    }

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        market = Market(market_of(listed, unlisted), clock=loop.time)
        # fal (and Replicate) list what they took: the adapter follows it to its image.
        found = await SimProvider(market, "listed").generate(req(0))
        # Together lists nothing: lost, booked as what it will be billed.
        with pytest.raises(ConnectionLost) as info:
            await SimProvider(market, "unlisted").generate(req(1, "black-forest-labs/FLUX.1-schnell"))
        await asyncio.sleep(10)
        bills = {r.provider: r.usd for r in market.billing()}
        assert found.provider_request_id
        return found.charged_usd - bills["listed"], info.value.charged_usd, bills["unlisted"]

    found_delta, booked, billed = run_virtual(main())
    assert found_delta == pytest.approx(0.0)
    assert billed > 0 and booked == pytest.approx(billed)
