"""TogetherProvider against the emulated market over real loopback HTTP (no mocks of our own code)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imagefunnel.errors import BadOutput, ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.market.defects import Defect
from imagefunnel.providers.base import GenerationRequest, PriceUnit, Provider
from imagefunnel.providers.pricing import PerImage, PerMegapixel, PriceModel
from imagefunnel.providers.together import TogetherProvider

MODEL = "black-forest-labs/FLUX.1-schnell"
TIME_FACTOR = 0.05
PRICE = PerMegapixel(usd=0.0027)


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "together",
        "models": [MODEL],
        "pricing": {"unit": "megapixel", "usd": 0.0027},
        "queue_s": [0.0, 0.1],
        "processing_s": [0.2, 0.4],
    }
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="together-adapter",
    seed=29,
    providers=(
        _profile("together"),
        _profile("flat", pricing={"unit": "image", "usd": 0.01}),
        _profile("slow", processing_s=[100, 100]),
        _profile("broken", error_5xx_rate=1.0),
        _profile("failing", failure_rate=1.0),
        _profile("limited", rate_limit_per_s=0.001),
        _profile("down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _profile("junk", garbage_rate=1.0),
    ),
)


def together(
    market: MarketServer, client: httpx.AsyncClient, name: str, *, price: PriceModel = PRICE, **overrides: Any
) -> TogetherProvider:
    options: dict[str, Any] = {"timeout_s": 5.0}
    return TogetherProvider(
        name=name,
        base_url=f"{market.base_url(name)}/v1",
        api_key="tg-test",
        model=MODEL,
        price=price,
        client=client,
        **(options | overrides),
    )


def req(seed: int = 1, *, width: int = 512, height: int = 512) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"job-{seed}", model=MODEL, prompt="studio headshot", width=width, height=height, seed=seed
    )


@pytest.mark.parametrize("response_format", ["base64", "url"])
async def test_generate_returns_the_image_and_its_per_megapixel_charge(
    market: MarketServer, client: httpx.AsyncClient, response_format: str
) -> None:
    provider = together(market, client, "together", response_format=response_format, steps=4)
    assert isinstance(provider, Provider)

    generation = await provider.generate(req(1, width=640, height=384))

    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (640, 384) and img.format == "PNG"
    assert generation.charged_usd == pytest.approx(0.0027 * 640 * 384 / 1e6)
    record = next(r for r in market.billing() if r.request_id == generation.provider_request_id)
    assert record.usd == pytest.approx(generation.charged_usd) and record.unit == "megapixel"
    assert market.truth(generation.provider_request_id).seed == 1
    quote = await provider.quote(req(1, width=640, height=384))
    assert quote.unit is PriceUnit.PER_MEGAPIXEL and quote.usd == pytest.approx(generation.charged_usd)


async def test_per_image_price(market: MarketServer, client: httpx.AsyncClient) -> None:
    generation = await together(market, client, "flat", price=PerImage(usd=0.01)).generate(req(2))
    record = next(r for r in market.billing() if r.request_id == generation.provider_request_id)
    assert generation.charged_usd == record.usd == 0.01


async def test_timeout_reports_the_quote_because_the_image_is_still_billed(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderTimeout) as info:
        await together(market, client, "slow", timeout_s=0.2).generate(req(3))
    assert info.value.charged_usd == pytest.approx(0.0027 * 0.262144)
    market.advance(200)
    [record] = [r for r in market.billing() if r.provider == "slow"]
    assert record.usd == pytest.approx(info.value.charged_usd)


async def test_failures_map_to_typed_errors(market: MarketServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderUnavailable, match="HTTP 500") as failed:
        await together(market, client, "failing").generate(req())
    assert failed.value.charged_usd == 0
    with pytest.raises(ProviderUnavailable, match=r"HTTP 50\d"):
        await together(market, client, "broken").generate(req())
    limited = together(market, client, "limited")
    await limited.generate(req(41))
    with pytest.raises(RateLimited) as info:
        await limited.generate(req(42))
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1
    assert not [r for r in market.billing() if r.provider in ("failing", "broken")]


async def test_outage_fails_generate_and_health(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = together(market, client, "down")
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.generate(req())
    assert not (await provider.health()).ok
    assert (await together(market, client, "together").health()).ok


async def test_garbage_truncated_is_bad_output_and_black_is_returned(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = together(market, client, "junk")
    outcomes: list[Any] = []
    for seed in range(50, 90):
        try:
            outcomes.append(await provider.generate(req(seed, width=256, height=256)))
        except BadOutput as exc:
            outcomes.append(exc)
        bad = [o for o in outcomes if isinstance(o, BadOutput)]
        returned = [o for o in outcomes if not isinstance(o, BadOutput)]
        if bad and returned:
            break
    assert bad and returned
    assert all(error.charged_usd == pytest.approx(0.0027 * 0.065536) for error in bad)
    for generation in returned:
        assert market.truth(generation.provider_request_id).defect is Defect.BLACK
        with Image.open(io.BytesIO(generation.image)) as img:
            assert not np.asarray(img).any()
    junk = [r for r in market.billing() if r.provider == "junk"]
    assert len(junk) == len(outcomes) and all(r.garbage for r in junk)
