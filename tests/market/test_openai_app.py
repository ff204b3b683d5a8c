"""The emulated OpenAI and Together image APIs over loopback HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.market.openai_app import prompt_tokens

OPENAI_MODEL = "gpt-image-1"
TOGETHER_MODEL = "black-forest-labs/FLUX.1-schnell"
AUTH = {"Authorization": "Bearer sk-test"}
FAST = {"queue_s": [0, 0], "processing_s": [0.01, 0.02]}


def _openai(name: str, **overrides: Any) -> ProviderProfile:
    base = {"name": name, "protocol": "openai", "models": [OPENAI_MODEL], **FAST}
    base["pricing"] = {"unit": "token", "usd": 40.0, "input_usd": 5.0}
    return ProviderProfile.model_validate(base | overrides)


def _together(name: str, **overrides: Any) -> ProviderProfile:
    base = {"name": name, "protocol": "together", "models": [TOGETHER_MODEL], **FAST}
    base["pricing"] = {"unit": "megapixel", "usd": 0.0027}
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="images-apps",
    seed=5,
    providers=(
        _openai("openai"),
        _openai("openai-failing", failure_rate=1.0),
        _openai("openai-limited", rate_limit_per_s=0.0001),
        _openai("openai-down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _together("together"),
        _together("together-broken", error_5xx_rate=1.0),
    ),
)


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    with MarketServer(SCENARIO, time_factor=0.05) as server:
        yield server


def generate(market: MarketServer, provider: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    url = f"{market.base_url(provider)}/v1/images/generations"
    return httpx.post(url, json=body, headers=AUTH | headers, timeout=10)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.mark.parametrize(
    ("size", "quality", "width", "height", "tokens"),
    [
        ("1024x1024", "low", 1024, 1024, 272),
        ("1536x1024", "high", 1536, 1024, 6240),
        (None, None, 1024, 1024, 1056),
    ],
)
def test_openai_answers_base64_with_token_usage(
    market: MarketServer, size: str | None, quality: str | None, width: int, height: int, tokens: int
) -> None:
    body: dict[str, Any] = {"model": OPENAI_MODEL, "prompt": "a studio headshot, soft light"}
    body |= {"size": size} if size else {}
    body |= {"quality": quality} if quality else {}
    response = generate(market, "openai", body)
    assert response.status_code == 200
    answer = response.json()
    usage = answer["usage"]
    text = prompt_tokens(body["prompt"])
    assert usage["output_tokens"] == tokens and usage["input_tokens"] == text
    assert usage["input_tokens_details"] == {"text_tokens": text, "image_tokens": 0}
    assert usage["total_tokens"] == tokens + text
    assert isinstance(answer["created"], int) and answer["size"] == f"{width}x{height}"
    assert "url" not in answer["data"][0]
    with decode(answer["data"][0]["b64_json"]) as img:
        assert img.size == (width, height) and img.format == "PNG"
    job_id = response.headers["x-request-id"]
    [record] = [r for r in market.billing() if r.request_id == job_id]
    assert record.unit == "token" and record.quantity == tokens
    assert record.usd == pytest.approx((tokens * 40 + text * 5) / 1e6)
    assert market.truth(job_id).width == width


@pytest.mark.parametrize(
    ("extra", "status", "param"),
    [
        ({"size": "512x512"}, 400, "size"),
        ({"quality": "hd"}, 400, "quality"),
        ({"n": 2}, 400, "n"),
        ({"response_format": "url"}, 400, "response_format"),
        ({"style": "vivid"}, 400, "style"),
        ({"model": "dall-e-9"}, 400, "model"),
    ],
)
def test_openai_refuses_what_gpt_image_refuses(
    market: MarketServer, extra: dict[str, Any], status: int, param: str
) -> None:
    response = generate(market, "openai", {"model": OPENAI_MODEL, "prompt": "x"} | extra)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_openai_auth_failure_outage_and_rate_limit(market: MarketServer) -> None:
    body = {"model": OPENAI_MODEL, "prompt": "x", "quality": "low"}
    unauthorized = generate(market, "openai", body, Authorization="")
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "invalid_api_key"
    down = generate(market, "openai-down", body)
    assert down.status_code == 503 and down.json()["error"]["type"] == "server_error"
    assert generate(market, "openai-limited", body).status_code == 200
    limited = generate(market, "openai-limited", body)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_openai_failed_generation_is_a_500_and_free(market: MarketServer) -> None:
    response = generate(market, "openai-failing", {"model": OPENAI_MODEL, "prompt": "x", "quality": "low"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
    assert market.stats()["openai-failing"].failed == 1
    assert not [r for r in market.billing() if r.provider == "openai-failing"]


def test_models_lists_follow_each_provider(market: MarketServer) -> None:
    openai = httpx.get(f"{market.base_url('openai')}/v1/models", headers=AUTH).json()
    assert openai["object"] == "list" and [m["id"] for m in openai["data"]] == [OPENAI_MODEL]
    together = httpx.get(f"{market.base_url('together')}/v1/models", headers=AUTH).json()
    assert [m["id"] for m in together] == [TOGETHER_MODEL]  # Together answers a bare array


@pytest.mark.parametrize("response_format", ["base64", "b64_json"])
def test_together_answers_base64(market: MarketServer, response_format: str) -> None:
    body = {"model": TOGETHER_MODEL, "prompt": "headshot", "width": 512, "height": 384, "seed": 9}
    response = generate(market, "together", body | {"response_format": response_format, "unknown": 1})
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "list" and answer["model"] == TOGETHER_MODEL
    with decode(answer["data"][0]["b64_json"]) as img:
        assert img.size == (512, 384) and img.format == "JPEG"  # Together's default output_format
    assert market.truth(answer["id"]).seed == 9
    [record] = [r for r in market.billing() if r.request_id == answer["id"]]
    assert record.unit == "megapixel" and record.usd == pytest.approx(0.0027 * 512 * 384 / 1e6)


def test_together_url_output_is_served_by_the_provider(market: MarketServer) -> None:
    body = {
        "model": TOGETHER_MODEL,
        "prompt": "headshot",
        "width": 256,
        "height": 256,
        "output_format": "png",
    }
    answer = generate(market, "together", body).json()
    url = answer["data"][0]["url"]
    assert url.startswith(market.base_url("together"))
    image = httpx.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


def test_together_errors_use_the_openai_shape(market: MarketServer) -> None:
    bad = generate(market, "together", {"model": TOGETHER_MODEL, "prompt": "x", "width": 8})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "width"
    missing = generate(market, "together", {"model": TOGETHER_MODEL})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    broken = generate(market, "together-broken", {"model": TOGETHER_MODEL, "prompt": "x"})
    assert broken.status_code in (500, 502, 503, 504) and broken.json()["error"]["type"] == "server_error"


def test_openai_profiles_take_bare_model_names() -> None:
    with pytest.raises(ValueError, match="bare name"):
        _openai("o", models=["openai/gpt-image-1"])
    with pytest.raises(ValueError, match="cannot bill per megapixel"):
        _openai("o", pricing={"unit": "megapixel", "usd": 0.01})
    with pytest.raises(ValueError, match="exactly one"):
        _openai("o", price_usd_per_mp=0.01)
