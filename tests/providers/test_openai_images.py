"""OpenAIImagesProvider against the emulated market over real loopback HTTP (no mocks of our own code)."""

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
from imagefunnel.providers.openai_images import OpenAIImagesProvider
from imagefunnel.providers.pricing import PerImage, PerToken

MODEL = "gpt-image-1"
TIME_FACTOR = 0.05


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "openai",
        "models": [MODEL],
        "pricing": {"unit": "token", "usd": 40.0, "input_usd": 5.0},
        "queue_s": [0.0, 0.1],
        "processing_s": [0.2, 0.4],
    }
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="openai-adapter",
    seed=23,
    providers=(
        _profile("openai"),
        _profile("slow", processing_s=[100, 100]),
        _profile("broken", error_5xx_rate=1.0),
        _profile("failing", failure_rate=1.0),
        _profile("limited", rate_limit_per_s=0.001),
        _profile("down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _profile("junk", garbage_rate=1.0),
    ),
)


def openai(
    market: MarketServer, client: httpx.AsyncClient, name: str, **overrides: Any
) -> OpenAIImagesProvider:
    options: dict[str, Any] = {"timeout_s": 5.0, "quality": "low", "output_format": "jpeg"}
    return OpenAIImagesProvider(
        name=name,
        base_url=f"{market.base_url(name)}/v1",
        api_key="sk-test",
        client=client,
        **(options | overrides),
    )


def req(
    seed: int = 1, *, width: int = 512, height: int = 512, prompt: str = "studio headshot"
) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"job-{seed}",
        model=MODEL,
        prompt=f"{prompt} #{seed}",
        width=width,
        height=height,
        seed=seed,
    )


async def test_generate_charges_the_reported_token_usage(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = openai(market, client, "openai")
    assert isinstance(provider, Provider)

    generation = await provider.generate(req(1, width=900, height=600))

    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (1536, 1024) and img.format == "JPEG"  # the nearest gpt-image size
    assert generation.content_type == "image/jpeg" and generation.meta["output_tokens"] == "408"
    record = next(r for r in market.billing() if r.request_id == generation.provider_request_id)
    assert record.unit == "token" and record.quantity == 408
    assert generation.charged_usd == pytest.approx(record.usd)  # from usage, as OpenAI billed it
    quote = await provider.quote(req(1, width=900, height=600))
    assert quote.unit is PriceUnit.PER_TOKEN
    assert quote.usd == pytest.approx(generation.charged_usd, rel=0.01)  # the estimate is close


async def test_quality_decides_the_tokens(market: MarketServer, client: httpx.AsyncClient) -> None:
    medium = await openai(market, client, "openai", quality="medium").generate(req(2))
    assert medium.meta["output_tokens"] == "1056" and medium.meta["quality"] == "medium"
    assert medium.charged_usd == pytest.approx(0.042, abs=0.001)


async def test_timeout_reports_the_quote_because_the_image_is_still_billed(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = openai(market, client, "slow", timeout_s=0.2)
    with pytest.raises(ProviderTimeout, match="cannot be cancelled") as info:
        await provider.generate(req(3))
    assert info.value.charged_usd == pytest.approx((await provider.quote(req(3))).usd)
    market.advance(200)  # the provider finishes the image nobody waits for any more...
    [record] = [r for r in market.billing() if r.provider == "slow"]
    assert record.usd == pytest.approx(info.value.charged_usd, rel=0.01)  # ...and bills it


async def test_failed_generation_is_unavailable_and_free(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderUnavailable, match="HTTP 500") as info:
        await openai(market, client, "failing").generate(req())
    assert info.value.charged_usd == 0
    assert not [r for r in market.billing() if r.provider == "failing"]


async def test_5xx_is_unavailable(market: MarketServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderUnavailable, match=r"HTTP 50\d"):
        await openai(market, client, "broken").generate(req())
    assert market.stats()["broken"].rejected_5xx >= 1


async def test_429_carries_retry_after(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = openai(market, client, "limited")
    await provider.generate(req(41))
    with pytest.raises(RateLimited, match="rate_limit_exceeded") as info:
        await provider.generate(req(42))
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1


async def test_outage_fails_generate_and_health(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = openai(market, client, "down")
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.generate(req())
    assert not (await provider.health()).ok
    assert (await openai(market, client, "openai").health()).ok


async def test_garbage_truncated_is_bad_output_and_black_is_returned(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = openai(market, client, "junk")
    outcomes: list[Any] = []
    for seed in range(50, 80):
        try:
            outcomes.append(await provider.generate(req(seed)))
        except BadOutput as exc:
            outcomes.append(exc)
        if any(isinstance(o, BadOutput) for o in outcomes) and not all(
            isinstance(o, BadOutput) for o in outcomes
        ):
            break
    bad = [o for o in outcomes if isinstance(o, BadOutput)]
    returned = [o for o in outcomes if not isinstance(o, BadOutput)]
    assert bad and returned
    junk = [r for r in market.billing() if r.provider == "junk"]
    assert len(junk) == len(outcomes) and all(r.garbage for r in junk)
    # Billed on HTTP 200 from the usage in the answer: the same tokens the billing log charged.
    assert all(error.charged_usd == pytest.approx(junk[0].usd) for error in bad)
    assert len({round(r.usd, 12) for r in junk}) == 1
    for generation in returned:
        assert market.truth(generation.provider_request_id).defect is Defect.BLACK
        with Image.open(io.BytesIO(generation.image)) as img:
            assert np.asarray(img).max() < 8  # black (JPEG ringing aside)


async def test_per_image_price_and_price_quality_mismatch(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    flat = await openai(market, client, "openai", price=PerImage(usd=0.04)).generate(req(5))
    assert flat.charged_usd == 0.04 and flat.meta["price_unit"] == "image"
    with pytest.raises(ValueError, match="quality"):
        openai(market, client, "openai", quality="high", price=PerToken(quality="low"))
    caps = await openai(market, client, "openai").capabilities()
    assert caps.max_width == 1536 and caps.models == frozenset({MODEL})
