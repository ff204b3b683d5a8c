"""The providers' official Python clients run unchanged against the emulated market: only the base
URL points at loopback. If they are happy, the emulators speak the real wire protocols."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from imagefunnel.market import MarketServer, ProviderProfile, Scenario

REPLICATE_MODEL = "black-forest-labs/flux-schnell"
OPENAI_MODEL = "gpt-image-1"
TOGETHER_MODEL = "black-forest-labs/FLUX.1-schnell"
FAST = {"queue_s": [0.1, 0.2], "processing_s": [0.2, 0.4]}


def _profile(name: str, protocol: str, model: str, pricing: dict[str, Any], **extra: Any) -> ProviderProfile:
    fields = {"name": name, "protocol": protocol, "models": [model], "pricing": pricing, **FAST, **extra}
    return ProviderProfile.model_validate(fields)


SCENARIO = Scenario(
    name="official-clients",
    seed=31,
    providers=(
        _profile("replicate", "replicate", REPLICATE_MODEL, {"unit": "image", "usd": 0.003}),
        _profile(
            "replicate-limited",
            "replicate",
            REPLICATE_MODEL,
            {"unit": "image", "usd": 0.003},
            rate_limit_per_s=1e-4,
        ),
        _profile("openai", "openai", OPENAI_MODEL, {"unit": "token", "usd": 40, "input_usd": 5}),
        _profile("openai-failing", "openai", OPENAI_MODEL, {"unit": "token", "usd": 40}, failure_rate=1.0),
        _profile("together", "together", TOGETHER_MODEL, {"unit": "megapixel", "usd": 0.0027}),
    ),
)


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    with MarketServer(SCENARIO, time_factor=0.05) as server:
        yield server


@pytest.fixture
def replicate_client(market: MarketServer) -> Iterator[Any]:
    replicate = pytest.importorskip("replicate")
    client = replicate.Client(api_token="r8_test", base_url=market.base_url("replicate"))
    client.poll_interval = 0.01
    yield client
    client._client.close()  # the client has no close(); its pooled connection would leak


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def test_replicate_create_wait_and_reload(market: MarketServer, replicate_client: Any) -> None:
    prediction = replicate_client.predictions.create(
        model=REPLICATE_MODEL, input={"prompt": "a headshot", "aspect_ratio": "4:3", "megapixels": "0.25"}
    )
    assert prediction.status in ("starting", "processing") and len(prediction.version) == 64
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.metrics["predict_time"] > 0
    again = replicate_client.predictions.get(prediction.id)
    again.reload()
    [url] = again.output
    assert url.startswith(market.base_url("replicate"))
    assert market.truth(prediction.id).width == 592  # 0.25 MP at 4:3, sides rounded to 16 like FLUX


def test_replicate_run_uses_prefer_wait_and_returns_file_output(
    market: MarketServer, replicate_client: Any
) -> None:
    replicate = pytest.importorskip("replicate")
    [output] = replicate_client.run(
        REPLICATE_MODEL, input={"prompt": "a headshot", "width": 320, "height": 256, "output_format": "png"}
    )
    assert isinstance(output, replicate.helpers.FileOutput)
    assert output.url.startswith("data:image/png;base64,")  # sync mode inlines the file
    assert image_size(output.read()) == (320, 256)


def test_replicate_version_create_and_cancel(replicate_client: Any) -> None:
    version = replicate_client.predictions.create(model=REPLICATE_MODEL, input={"prompt": "x"}).version
    prediction = replicate_client.predictions.create(version=version, input={"prompt": "y"})
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"


def test_replicate_errors_surface_as_replicate_errors(market: MarketServer) -> None:
    replicate = pytest.importorskip("replicate")
    client = replicate.Client(api_token="r8_test", base_url=market.base_url("replicate-limited"))
    try:
        client.predictions.create(model=REPLICATE_MODEL, input={"prompt": "one"})
        with pytest.raises(replicate.exceptions.ReplicateError) as info:
            client.predictions.create(model=REPLICATE_MODEL, input={"prompt": "two"})
    finally:
        client._client.close()
    assert info.value.status == 429 and info.value.title == "Request was throttled."


async def test_openai_client_generates_b64_json_with_usage(market: MarketServer) -> None:
    openai = pytest.importorskip("openai")
    async with openai.AsyncOpenAI(
        base_url=f"{market.base_url('openai')}/v1", api_key="sk-test", max_retries=0
    ) as client:
        response = await client.images.generate(
            model=OPENAI_MODEL, prompt="a studio headshot", size="1024x1536", quality="low", n=1
        )
    assert response.usage is not None and response.usage.output_tokens == 408
    assert response.usage.input_tokens_details.text_tokens == response.usage.input_tokens
    assert response.usage.total_tokens == response.usage.input_tokens + 408
    assert response.size == "1024x1536" and response.data is not None
    assert image_size(base64.b64decode(response.data[0].b64_json or "")) == (1024, 1536)


async def test_openai_client_sees_typed_errors(market: MarketServer) -> None:
    openai = pytest.importorskip("openai")
    async with openai.AsyncOpenAI(
        base_url=f"{market.base_url('openai-failing')}/v1", api_key="sk-test", max_retries=0
    ) as client:
        with pytest.raises(openai.InternalServerError):
            await client.images.generate(model=OPENAI_MODEL, prompt="x", quality="low")
        with pytest.raises(openai.BadRequestError, match="size"):
            await client.images.generate(model=OPENAI_MODEL, prompt="x", size="256x256")  # type: ignore[arg-type]
    async with openai.AsyncOpenAI(
        base_url=f"{market.base_url('openai')}/v1", api_key="k", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.images.generate(
                model=OPENAI_MODEL, prompt="x", extra_headers={"Authorization": "Basic k"}
            )


async def test_openai_client_speaks_to_the_together_emulator(market: MarketServer) -> None:
    openai = pytest.importorskip("openai")
    async with openai.AsyncOpenAI(
        base_url=f"{market.base_url('together')}/v1", api_key="tg-test", max_retries=0
    ) as client:
        response = await client.images.generate(
            model=TOGETHER_MODEL,
            prompt="a studio headshot",
            response_format="b64_json",
            extra_body={"width": 512, "height": 384, "seed": 3},
        )
    assert response.data is not None
    assert image_size(base64.b64decode(response.data[0].b64_json or "")) == (512, 384)


def test_official_together_client_speaks_to_the_market(market: MarketServer) -> None:
    import together  # in the test extra: this check runs everywhere, CI included

    # together 3 joins "/v1/images/generations" to a host-only base URL (its default is the API host).
    client = together.Together(api_key="tg-test", base_url=market.base_url("together"))
    response = client.images.generate(
        model=TOGETHER_MODEL, prompt="a headshot", width=512, height=512, response_format="base64"
    )
    assert image_size(base64.b64decode(response.data[0].b64_json)) == (512, 512)


def test_replicate_lists_predictions_newest_first_with_their_input_a_page_at_a_time(
    replicate_client: Any,
) -> None:
    made = [
        replicate_client.predictions.create(
            model=REPLICATE_MODEL, input={"prompt": f"list {i}", "width": 256, "height": 256, "seed": i}
        ).id
        for i in range(101)
    ]
    first = replicate_client.predictions.list()
    assert [p.id for p in first.results[:3]] == made[::-1][:3]
    assert first.results[0].input == {
        "prompt": "list 100", "width": 256, "height": 256, "seed": 100, "output_format": "webp"
    }  # fmt: skip
    assert len(first.results) == 100 and first.next is not None
    second = replicate_client.predictions.list(first.next)
    seen = [p.id for p in first.results] + [p.id for p in second.results]
    assert seen.index(made[0]) == 100 and len(set(seen)) == len(seen)
