"""RemoveBgProvider against the market's cutout APIs over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import imagefunnel.market
from imagefunnel.errors import BadOutput, ProviderUnavailable, RateLimited
from imagefunnel.imaging import decode_image
from imagefunnel.market.cutout_app import CutoutServer
from imagefunnel.market.cutout_profile import CutoutApiProfile, GarbageMatte
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.cutout_api import RemoveBgProvider
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL

pytest.importorskip("mediapipe")
PHOTO = (Path(imagefunnel.market.__file__).parent / "assets" / "portraits" / "biden.jpg").read_bytes()
FAST = (0.0, 0.01)


@pytest.fixture(scope="module")
def apis() -> Iterator[CutoutServer]:
    profiles = [
        CutoutApiProfile(name="good", usd_per_image=0.07, processing_s=FAST),
        CutoutApiProfile(name="cheap", usd_per_image=0.02, quality="budget", processing_s=FAST),
        CutoutApiProfile(
            name="junk",
            usd_per_image=0.02,
            processing_s=FAST,
            garbage_rate=1.0,
            garbage_mix={GarbageMatte.EMPTY: 1.0},
        ),
        CutoutApiProfile(name="down", usd_per_image=0.05, processing_s=FAST, error_5xx_rate=1.0),
        CutoutApiProfile(name="picky", usd_per_image=0.05, processing_s=FAST, unknown_foreground_rate=1.0),
        CutoutApiProfile(name="limited", usd_per_image=0.05, processing_s=FAST, rate_limit_per_s=0.01),
    ]
    with CutoutServer(profiles, time_factor=1.0) as server:
        yield server


def _request(image: bytes = PHOTO) -> GenerationRequest:
    return GenerationRequest(
        request_id="r1", model=BACKGROUND_REMOVAL_MODEL, prompt="", reference_images=(image,)
    )


def _provider(apis: CutoutServer, name: str, key: str = "k") -> RemoveBgProvider:
    return RemoveBgProvider(
        name=name, base_url=apis.base_url(name), api_key=key, usd_per_credit=apis.profile(name).usd_per_image
    )


async def test_cutout_is_rgba_and_charged_per_credit(apis: CutoutServer) -> None:
    provider = _provider(apis, "good")
    generation = await provider.generate(_request())
    decoded = decode_image(generation.image)
    assert decoded.alpha is not None and 0.2 < (decoded.alpha > 127).mean() < 0.8
    assert generation.charged_usd == pytest.approx(0.07)
    assert (await provider.quote(_request())).usd == pytest.approx(0.07)
    assert apis.truth(generation.provider_request_id).garbage is None
    assert (await provider.health()).ok
    cheap = await _provider(apis, "cheap").generate(_request())
    assert max(decode_image(cheap.image).rgb.shape[:2]) == 400  # a budget API's preview size
    await provider.aclose()


async def test_garbage_is_billed_and_recorded_as_such(apis: CutoutServer) -> None:
    generation = await _provider(apis, "junk").generate(_request())
    assert generation.charged_usd == pytest.approx(0.02)  # a 200 is billed, whatever it holds
    assert apis.truth(generation.provider_request_id).garbage is GarbageMatte.EMPTY
    assert not decode_image(generation.image).alpha.any()  # type: ignore[union-attr]


async def test_errors_map_to_typed_provider_errors(apis: CutoutServer) -> None:
    with pytest.raises(ProviderUnavailable, match="503"):
        await _provider(apis, "down").generate(_request())
    with pytest.raises(BadOutput, match="unknown_foreground") as info:
        await _provider(apis, "picky").generate(_request())
    assert info.value.charged_usd == 0.0
    with pytest.raises(ProviderUnavailable, match="403 auth_failed"):
        await _provider(apis, "good", key="").generate(_request())
    with pytest.raises(BadOutput, match="invalid_image"):
        await _provider(apis, "good").generate(_request(b"not an image"))
    limited = _provider(apis, "limited")
    await limited.generate(_request())  # the bucket's one token
    with pytest.raises(RateLimited) as limited_info:
        await limited.generate(_request())
    assert limited_info.value.retry_after_s is not None and limited_info.value.retry_after_s > 1
    billed = [r for r in apis.billing() if r.provider in {"down", "picky"}]
    assert billed == []  # only a 200 is billed


async def test_raw_protocol_answers_like_remove_bg(apis: CutoutServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{apis.base_url('good')}/v1.0/removebg",
            headers={"X-Api-Key": "k"},
            files={"image_file": ("p.jpg", PHOTO)},
            data={"size": "auto"},
        )
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.headers["x-credits-charged"] == "1" and int(response.headers["x-width"]) > 0
        missing = await client.post(
            f"{apis.base_url('good')}/v1.0/removebg", headers={"X-Api-Key": "k"}, data={}
        )
        assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == "missing_source"
        account = await client.get(f"{apis.base_url('good')}/v1.0/account", headers={"X-Api-Key": "k"})
        assert account.json()["data"]["attributes"]["credits"]["total"] > 0
