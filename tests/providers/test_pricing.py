"""Price models: quotes before, charges after, from the numbers a provider reports."""

from __future__ import annotations

import dataclasses

import pytest

from imagefunnel.providers.base import GenerationRequest, PriceUnit
from imagefunnel.providers.pricing import (
    Observed,
    PerGpuSecond,
    PerImage,
    PerMegapixel,
    PerToken,
    gpt_image_size,
    gpt_image_tokens,
    quote_for,
)


def req(
    width: int = 1024, height: int = 1024, prompt: str = "studio headshot, soft light"
) -> GenerationRequest:
    return GenerationRequest(request_id="r", model="m", prompt=prompt, width=width, height=height)


def test_per_image_quotes_the_list_price_and_charges_per_output() -> None:
    price = PerImage(usd=0.04)
    assert price.quote(req(512, 512)) == price.quote(req(2048, 2048)) == 0.04
    assert price.charge(Observed(images=1)) == 0.04
    assert price.charge(Observed(images=0)) == 0.0  # a cancelled prediction produced nothing
    assert price.unit is PriceUnit.PER_IMAGE and price.unit_price_usd == 0.04


def test_per_megapixel_scales_with_the_size() -> None:
    price = PerMegapixel(usd=0.0027)
    assert price.quote(req(1024, 1024)) == pytest.approx(0.0027 * 1.048576)
    assert price.charge(Observed(width=512, height=512)) == pytest.approx(0.0027 * 0.262144)
    with pytest.raises(ValueError, match="width and height"):
        price.charge(Observed())


def test_per_gpu_second_bills_reported_seconds_at_an_hourly_rate_that_may_move() -> None:
    price = PerGpuSecond(usd_per_hour=3.6, expected_s=4.0)
    assert price.unit_price_usd == pytest.approx(0.001)
    assert price.quote(req()) == pytest.approx(0.004)
    assert price.charge(Observed(gpu_seconds=2.5)) == pytest.approx(0.0025)
    spot = dataclasses.replace(price, usd_per_hour=7.2)  # the box got dearer
    assert spot.charge(Observed(gpu_seconds=2.5)) == pytest.approx(0.005)
    assert PerGpuSecond.per_second(0.0014, expected_s=1).usd_per_hour == pytest.approx(5.04)
    with pytest.raises(ValueError, match="GPU seconds"):
        price.charge(Observed())


def test_per_token_charges_the_reported_usage() -> None:
    price = PerToken(output_usd=40.0, input_usd=5.0, input_image_usd=10.0)
    usage = Observed(input_text_tokens=20, input_image_tokens=100, output_tokens=1056)
    assert price.charge(usage) == pytest.approx((1056 * 40 + 20 * 5 + 100 * 10) / 1e6)
    assert price.unit is PriceUnit.PER_TOKEN and price.unit_price_usd == pytest.approx(40e-6)


@pytest.mark.parametrize(
    ("quality", "width", "height", "tokens"),
    [
        ("low", 1024, 1024, 272),
        ("medium", 1024, 1024, 1056),
        ("high", 1536, 1024, 6240),
        ("low", 1024, 1536, 408),
    ],
)
def test_per_token_quotes_from_the_gpt_image_table(
    quality: str, width: int, height: int, tokens: int
) -> None:
    price = PerToken(quality=quality)  # type: ignore[arg-type]
    prompt = "x" * 40  # about 10 text tokens
    assert price.quote(req(width, height, prompt)) == pytest.approx((tokens * 40 + 10 * 5) / 1e6)
    # The headline figures: ≈ $0.011 low / $0.042 medium / $0.167 high per 1024² image.
    assert PerToken(quality="medium").quote(req()) == pytest.approx(0.042, abs=0.001)


def test_gpt_image_size_picks_the_nearest_aspect() -> None:
    assert gpt_image_size(512, 512) == (1024, 1024)
    assert gpt_image_size(1920, 1080) == (1536, 1024)
    assert gpt_image_size(600, 900) == (1024, 1536)
    with pytest.raises(ValueError, match="not a gpt-image size"):
        gpt_image_tokens(512, 512, "low")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_prices_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="price"):
        PerImage(usd=bad)
    with pytest.raises(ValueError, match="price"):
        PerGpuSecond(usd_per_hour=bad, expected_s=1)
    with pytest.raises(ValueError, match="price"):
        PerToken(output_usd=bad)


def test_quote_for_builds_the_quote_record() -> None:
    quote = quote_for(PerMegapixel(usd=0.02), provider="p", model="m", request=req(1000, 1000))
    assert (quote.provider, quote.model, quote.unit, quote.unit_price_usd) == (
        "p",
        "m",
        PriceUnit.PER_MEGAPIXEL,
        0.02,
    )
    assert quote.usd == pytest.approx(0.02)
