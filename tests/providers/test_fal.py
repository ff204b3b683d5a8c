"""FalProvider against the emulated market over real loopback HTTP (no mocks of our own code)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imagefunnel.errors import BadOutput, ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.market.defects import Defect
from imagefunnel.market.images import AssetLibrary
from imagefunnel.providers.base import GenerationRequest, PriceUnit, Provider
from imagefunnel.providers.fal import FalProvider

MODEL = "fal-ai/flux/dev"
TIME_FACTOR = 0.05  # 1 scenario second = 50 ms


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "fal",
        "models": [MODEL],
        "price_usd_per_mp": 0.02,
        "queue_s": [0.1, 0.3],
        "processing_s": [0.2, 0.4],
    }
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="adapter-tests",
    seed=11,
    providers=(
        _profile("clean"),
        _profile("slow", queue_s=[1000, 1000]),
        _profile("broken", error_5xx_rate=1.0),
        _profile("failing", failure_rate=1.0),
        _profile("limited", rate_limit_per_s=0.001),
        _profile("down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _profile("junk", garbage_rate=1.0),
    ),
)


def fal(market: MarketServer, client: httpx.AsyncClient, name: str, **overrides: Any) -> FalProvider:
    options: dict[str, Any] = {"poll_interval_s": 0.01, "timeout_s": 5.0, "price_ttl_s": 0.0}
    return FalProvider(
        name=name,
        base_url=market.base_url(name),
        api_key="fal-test",
        model=MODEL,
        client=client,
        **(options | overrides),
    )


def req(seed: int = 1, *, width: int = 512, height: int = 512) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"job-{seed}", model=MODEL, prompt="studio headshot", width=width, height=height, seed=seed
    )


async def test_generate_returns_a_decodable_image_and_its_charge(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "clean")
    assert isinstance(provider, Provider)

    generation = await provider.generate(req(1, width=640, height=512))

    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (640, 512)
        assert img.format == "PNG"
    assert generation.content_type == "image/png"
    assert generation.charged_usd == pytest.approx(0.02 * 640 * 512 / 1e6)
    assert generation.provider == "clean" and generation.request_id == "job-1"
    assert generation.meta["seed"] == "1"
    assert generation.latency_s > 0
    assert market.truth(generation.provider_request_id).width == 640


async def test_quote_is_live_unit_price_times_megapixels(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    quote = await fal(market, client, "clean").quote(req(width=1024, height=1024))
    assert quote.unit is PriceUnit.PER_MEGAPIXEL
    assert quote.unit_price_usd == pytest.approx(0.02)
    assert quote.usd == pytest.approx(0.02 * 1.048576)


async def test_quote_follows_the_price_schedule(client: httpx.AsyncClient) -> None:
    scenario = Scenario(
        name="prices",
        providers=(_profile("p", price_schedule=[{"after_s": 1000, "usd_per_mp": 0.005}]),),
    )
    with MarketServer(scenario, time_factor=TIME_FACTOR) as market:
        provider = fal(market, client, "p")
        before = await provider.quote(req())
        market.advance(1000)
        after = await provider.quote(req())
    assert before.unit_price_usd == pytest.approx(0.02)
    assert after.unit_price_usd == pytest.approx(0.005)
    assert after.usd == pytest.approx(0.005 * 0.262144)


async def test_price_is_cached_for_the_ttl(market: MarketServer, client: httpx.AsyncClient) -> None:
    seen: list[str] = []

    async def count(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        provider = fal(market, http, "clean", price_ttl_s=60.0)
        await provider.quote(req())
        await provider.quote(req(2))
    assert seen == ["/clean/v1/models/pricing"]


async def test_billing_log_matches_charges(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = fal(market, client, "clean")
    generations = [await provider.generate(req(seed)) for seed in (21, 22, 23)]

    billed = {record.request_id: record for record in market.billing()}
    for generation in generations:
        record = billed[generation.provider_request_id]
        assert record.usd == pytest.approx(generation.charged_usd)
        assert record.provider == "clean" and not record.garbage


async def test_same_seed_gives_same_bytes_and_truth(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = fal(market, client, "clean")
    first = await provider.generate(req(31))
    again = await provider.generate(req(31))
    other = await provider.generate(req(32))

    assert first.provider_request_id != again.provider_request_id
    assert first.image == again.image
    assert market.truth(first.provider_request_id) == market.truth(again.provider_request_id)
    assert other.image != first.image


async def test_failed_request_is_unavailable_and_not_billed(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderUnavailable, match="runner_server_error"):
        await fal(market, client, "failing").generate(req())
    assert not [r for r in market.billing() if r.provider == "failing"]
    assert market.stats()["failing"].failed == 1


async def test_5xx_is_unavailable_and_not_billed(market: MarketServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderUnavailable, match=r"HTTP 50\d") as info:
        await fal(market, client, "broken").generate(req())
    assert info.value.charged_usd == 0
    assert market.stats()["broken"].rejected_5xx >= 1
    assert not [r for r in market.billing() if r.provider == "broken"]


async def test_429_carries_retry_after(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = fal(market, client, "limited")
    await provider.generate(req(41))  # the one token in the bucket
    with pytest.raises(RateLimited) as info:
        await provider.generate(req(42))
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1


async def test_outage_makes_generate_quote_and_health_fail(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "down")
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.generate(req())
    with pytest.raises(ProviderUnavailable):
        await provider.quote(req())
    health = await provider.health()
    assert not health.ok and "503" in health.detail
    assert (await fal(market, client, "clean").health()).ok


async def test_timeout_cancels_the_queued_request(market: MarketServer, client: httpx.AsyncClient) -> None:
    cancelled_before = market.stats()["slow"].cancelled
    cancel_calls: list[str] = []

    async def spy(request: httpx.Request) -> None:
        if request.method == "PUT":
            cancel_calls.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [spy]}) as http:
        provider = fal(market, http, "slow", timeout_s=0.3)
        with pytest.raises(ProviderTimeout) as info:
            await provider.generate(req())

    assert len(cancel_calls) == 1 and cancel_calls[0].endswith("/cancel")
    assert info.value.charged_usd == 0  # cancelled while queued: never billed
    assert market.stats()["slow"].cancelled == cancelled_before + 1


async def test_abandoned_request_is_cancelled_at_the_provider(market: MarketServer) -> None:
    before = market.stats()["slow"].cancelled
    submitted = asyncio.Event()

    async def on_response(response: httpx.Response) -> None:
        if response.request.method == "POST":
            submitted.set()

    async with httpx.AsyncClient(event_hooks={"response": [on_response]}) as http:
        task = asyncio.create_task(fal(market, http, "slow").generate(req(7)))
        await asyncio.wait_for(submitted.wait(), timeout=5)
        task.cancel()  # what a router does to the loser of a hedged pair
        with pytest.raises(asyncio.CancelledError):
            await task
    assert market.stats()["slow"].cancelled == before + 1


async def test_garbage_truncated_is_bad_output_and_black_is_returned(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "junk")
    outcomes: list[Any] = []
    for seed in range(50, 90):  # until both kinds have been drawn (each is a fair coin)
        try:
            outcomes.append(await provider.generate(req(seed)))
        except BadOutput as exc:
            outcomes.append(exc)
        bad = [o for o in outcomes if isinstance(o, BadOutput)]
        returned = [o for o in outcomes if not isinstance(o, BadOutput)]
        if bad and returned:
            break
    assert bad and returned
    for error in bad:
        assert error.charged_usd == pytest.approx(0.02 * 0.262144)  # billed on HTTP 200
    for generation in returned:
        assert market.truth(generation.provider_request_id).defect is Defect.BLACK
        with Image.open(io.BytesIO(generation.image)) as img:
            assert not np.asarray(img).any()
    junk = [r for r in market.billing() if r.provider == "junk"]
    assert len(junk) == len(outcomes) and all(r.garbage for r in junk)


async def test_owned_client_is_closed(market: MarketServer) -> None:
    provider = FalProvider(name="clean", base_url=market.base_url("clean"), api_key="k", model=MODEL)
    assert (await provider.capabilities()).models == frozenset({MODEL})
    await provider.aclose()
    assert provider._client.is_closed


async def test_a_client_passed_in_is_left_open_for_its_owner(market: MarketServer) -> None:
    async with httpx.AsyncClient() as client:
        provider = FalProvider(
            name="clean", base_url=market.base_url("clean"), api_key="k", model=MODEL, client=client
        )
        await provider.aclose()
        assert not client.is_closed


def test_official_fal_client_speaks_to_the_market(
    market: MarketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fal_client = pytest.importorskip("fal_client")
    fc = pytest.importorskip("fal_client.client")
    monkeypatch.setattr(fc, "QUEUE_URL_FORMAT", f"{market.base_url('clean')}/")
    monkeypatch.setattr(fc, "RUN_URL_FORMAT", f"{market.base_url('clean')}/")
    monkeypatch.setattr(fc, "MAX_ATTEMPTS", 1)
    client = fal_client.SyncClient(key="fal-test")
    arguments = {"prompt": "a cat", "image_size": "square", "seed": 5}

    try:
        handle = client.submit(MODEL, arguments=arguments)
        result = handle.get(interval=0.01)
        status = client.status(MODEL, handle.request_id, with_logs=True)
        subpath = client.submit("fal-ai/flux", arguments=arguments, path="dev").get(interval=0.01)
    finally:
        client._client.close()  # SyncClient has no close(); its pooled connection would leak

    assert result["images"][0]["width"] == 512 and result["seed"] == 5
    assert isinstance(status, fal_client.Completed)
    assert subpath["images"][0]["content_type"] == "image/jpeg"
    assert market.truth(handle.request_id).seed == 5


async def test_reference_photos_go_to_the_reference_endpoint_as_a_data_uri(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    photo = AssetLibrary().file("obama_2.jpg")
    plain = fal(market, client, "clean")
    assert not (await plain.capabilities()).supports_reference_images
    with pytest.raises(ProviderUnavailable, match="reference_endpoint"):
        await plain.generate(dataclasses.replace(req(), reference_images=(photo,)))
    referencing = fal(market, client, "clean", reference_endpoint=f"{MODEL}/image-to-image")
    assert (await referencing.capabilities()).supports_reference_images
    generation = await referencing.generate(dataclasses.replace(req(4), reference_images=(photo,)))
    assert market.truth(generation.provider_request_id).subject == "obama"
    unreferenced = await referencing.generate(req(5))  # a plain request still goes to the model
    assert market.truth(unreferenced.provider_request_id).subject is None
