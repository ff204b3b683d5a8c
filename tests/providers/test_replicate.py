"""ReplicateProvider against the emulated market over real loopback HTTP (no mocks of our own code)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imagefunnel.errors import BadOutput, ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.market.defects import Defect
from imagefunnel.market.replicate_app import version_id
from imagefunnel.providers.base import GenerationRequest, PriceUnit, Provider
from imagefunnel.providers.pricing import PerGpuSecond, PerImage, PriceModel
from imagefunnel.providers.replicate import ReplicateProvider

MODEL = "black-forest-labs/flux-schnell"
TIME_FACTOR = 0.05  # 1 scenario second = 50 ms
PER_IMAGE = {"unit": "image", "usd": 0.003}
PER_SECOND = {"unit": "gpu_second", "usd": 0.0014}


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "replicate",
        "models": [MODEL],
        "pricing": PER_IMAGE,
        "queue_s": [0.1, 0.3],
        "processing_s": [0.2, 0.4],
    }
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="replicate-adapter",
    seed=17,
    providers=(
        _profile("official"),
        _profile("stepwise", queue_s=[1, 1], processing_s=[2, 2]),
        _profile("hardware", pricing=PER_SECOND, processing_s=[1, 2]),
        _profile("slow", queue_s=[1000, 1000]),
        _profile("long", pricing=PER_SECOND, queue_s=[0, 0], processing_s=[1000, 1000]),
        _profile("broken", error_5xx_rate=1.0),
        _profile("failing", failure_rate=1.0),
        _profile("limited", rate_limit_per_s=0.001),
        _profile("down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _profile("junk", garbage_rate=1.0),
    ),
)
OFFICIAL = PerImage(usd=0.003)
HARDWARE = PerGpuSecond.per_second(0.0014, expected_s=1.5)


def replicate(
    market: MarketServer,
    client: httpx.AsyncClient,
    name: str,
    *,
    price: PriceModel = OFFICIAL,
    model: str = MODEL,
    **overrides: Any,
) -> ReplicateProvider:
    options: dict[str, Any] = {"poll_interval_s": 0.01, "max_poll_interval_s": 0.02, "timeout_s": 5.0}
    return ReplicateProvider(
        name=name,
        base_url=market.base_url(name),
        api_token="r8_test",
        model=model,
        price=price,
        client=client,
        **(options | overrides),
    )


def req(seed: int = 1, *, width: int = 512, height: int = 512) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"job-{seed}", model=MODEL, prompt="studio headshot", width=width, height=height, seed=seed
    )


class Spy:
    """Records every request line and every prediction status the provider was told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.statuses: list[str] = []

    async def on_request(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path, dict(request.headers)))

    async def on_response(self, response: httpx.Response) -> None:
        if "/v1/predictions" in response.request.url.path or response.request.method == "POST":
            body = json.loads(await response.aread())
            if isinstance(body, dict) and "status" in body and "urls" in body:
                self.statuses.append(body["status"])

    def client(self) -> httpx.AsyncClient:
        hooks = {"request": [self.on_request], "response": [self.on_response]}
        return httpx.AsyncClient(timeout=5.0, event_hooks=hooks)  # type: ignore[arg-type]

    def calls(self, method: str) -> list[str]:
        return [path for verb, path, _ in self.requests if verb == method]


async def test_generate_returns_the_image_and_the_per_image_charge(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = replicate(market, client, "official")
    assert isinstance(provider, Provider)

    generation = await provider.generate(req(1, width=640, height=512))

    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (640, 512) and img.format == "PNG"
    assert generation.charged_usd == pytest.approx(0.003)
    assert generation.content_type == "image/png" and generation.meta["price_unit"] == "image"
    record = next(r for r in market.billing() if r.request_id == generation.provider_request_id)
    assert record.usd == pytest.approx(generation.charged_usd) and record.unit == "image"
    truth = market.truth(generation.provider_request_id)
    assert (truth.width, truth.seed, truth.image_format) == (640, 1, "png")


async def test_status_walks_starting_processing_succeeded(market: MarketServer) -> None:
    spy = Spy()
    async with spy.client() as http:
        await replicate(market, http, "stepwise").generate(req(2))
    assert spy.statuses[0] == "starting" and spy.statuses[-1] == "succeeded"
    assert "processing" in spy.statuses
    order = [s for i, s in enumerate(spy.statuses) if i == 0 or s != spy.statuses[i - 1]]
    assert order == ["starting", "processing", "succeeded"]
    # Every create carries the deadline, so a prediction we lose track of stops costing at Replicate.
    [(_, _, headers)] = [r for r in spy.requests if r[0] == "POST"]
    assert headers["cancel-after"] == "7s" and headers["authorization"] == "Bearer r8_test"  # 5 s + 2 s


async def test_hardware_priced_model_is_charged_its_predict_time(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    generation = await replicate(market, client, "hardware", price=HARDWARE).generate(req(3))
    predict_time = float(generation.meta["predict_time_s"])
    assert 1.0 <= predict_time <= 2.0
    assert generation.charged_usd == pytest.approx(0.0014 * predict_time)
    record = next(r for r in market.billing() if r.request_id == generation.provider_request_id)
    assert record.unit == "gpu_second" and record.usd == pytest.approx(generation.charged_usd)


async def test_versioned_model_uses_the_predictions_endpoint(market: MarketServer) -> None:
    spy = Spy()
    async with spy.client() as http:
        provider = replicate(market, http, "official", model=f"{MODEL}:{version_id(MODEL)}")
        generation = await provider.generate(req(4))
    assert spy.calls("POST") == ["/official/v1/predictions"]
    assert generation.model == f"{MODEL}:{version_id(MODEL)}"


async def test_failed_prediction_is_unavailable_and_free(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderUnavailable, match="failed") as info:
        await replicate(market, client, "failing").generate(req())
    assert info.value.charged_usd == 0
    assert not [r for r in market.billing() if r.provider == "failing"]


async def test_timeout_cancels_the_queued_prediction(market: MarketServer) -> None:
    before = market.stats()["slow"].cancelled
    spy = Spy()
    async with spy.client() as http:
        with pytest.raises(ProviderTimeout) as info:
            await replicate(market, http, "slow", timeout_s=0.3).generate(req())
    [cancel] = [path for path in spy.calls("POST") if path.endswith("/cancel")]
    assert cancel.startswith("/slow/v1/predictions/")
    assert info.value.charged_usd == 0 and spy.statuses[-1] == "canceled"
    assert market.stats()["slow"].cancelled == before + 1


async def test_abandoned_running_prediction_is_cancelled_and_pays_its_gpu_time(market: MarketServer) -> None:
    before = market.stats()["long"].cancelled
    billed_before = {r.request_id for r in market.billing()}
    created = asyncio.Event()

    async def on_response(response: httpx.Response) -> None:
        if response.request.method == "POST":
            created.set()

    async with httpx.AsyncClient(event_hooks={"response": [on_response]}) as http:
        task = asyncio.create_task(replicate(market, http, "long", price=HARDWARE).generate(req(7)))
        await asyncio.wait_for(created.wait(), timeout=5)
        await asyncio.sleep(0.05)  # let it run a little (1 scenario second) before we give up
        task.cancel()  # what a router does to the loser of a hedged pair
        with pytest.raises(asyncio.CancelledError):
            await task
    assert market.stats()["long"].cancelled == before + 1
    [record] = [r for r in market.billing() if r.provider == "long" and r.request_id not in billed_before]
    assert record.unit == "gpu_second" and record.quantity > 0


async def test_cancel_after_deadline_aborts_a_prediction_that_never_started(market: MarketServer) -> None:
    spy = Spy()
    async with spy.client() as http:
        provider = replicate(market, http, "slow", cancel_after_s=0.1, timeout_s=5.0)
        with pytest.raises(ProviderTimeout, match="aborted") as info:
            await provider.generate(req(8))
    assert spy.statuses[-1] == "aborted" and info.value.charged_usd == 0
    assert not [path for path in spy.calls("POST") if path.endswith("/cancel")]  # the provider did it
    assert [headers["cancel-after"] for verb, _, headers in spy.requests if verb == "POST"] == ["100ms"]


async def test_cancel_after_deadline_cancels_a_running_prediction(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = replicate(market, client, "long", price=HARDWARE, cancel_after_s=0.1)
    with pytest.raises(ProviderTimeout, match="Cancel-After") as info:
        await provider.generate(req(9))
    charged = info.value.charged_usd
    [record] = [r for r in market.billing() if r.provider == "long" and r.usd == pytest.approx(charged)]
    assert record.quantity == pytest.approx(2.0, abs=0.2)  # the 100 ms deadline is 2 scenario seconds


async def test_429_carries_retry_after(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = replicate(market, client, "limited")
    await provider.generate(req(41))  # the one token in the bucket
    with pytest.raises(RateLimited) as info:
        await provider.generate(req(42))
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1


async def test_5xx_is_unavailable_and_free(market: MarketServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderUnavailable, match=r"HTTP 50\d") as info:
        await replicate(market, client, "broken").generate(req())
    assert info.value.charged_usd == 0
    assert not [r for r in market.billing() if r.provider == "broken"]


async def test_outage_fails_generate_and_health(market: MarketServer, client: httpx.AsyncClient) -> None:
    provider = replicate(market, client, "down")
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.generate(req())
    health = await provider.health()
    assert not health.ok and "503" in health.detail
    assert (await replicate(market, client, "official").health()).ok


async def test_garbage_truncated_is_bad_output_and_black_is_returned(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = replicate(market, client, "junk")
    outcomes: list[Any] = []
    for seed in range(50, 90):  # until both kinds have been drawn (each is a fair coin)
        try:
            outcomes.append(await provider.generate(req(seed, width=256, height=256)))
        except BadOutput as exc:
            outcomes.append(exc)
        bad = [o for o in outcomes if isinstance(o, BadOutput)]
        returned = [o for o in outcomes if not isinstance(o, BadOutput)]
        if bad and returned:
            break
    assert bad and returned
    assert all(error.charged_usd == pytest.approx(0.003) for error in bad)  # billed on HTTP 200
    for generation in returned:
        assert market.truth(generation.provider_request_id).defect is Defect.BLACK
        with Image.open(io.BytesIO(generation.image)) as img:
            assert not np.asarray(img).any()
    junk = [r for r in market.billing() if r.provider == "junk"]
    assert len(junk) == len(outcomes) and all(r.garbage for r in junk)


async def test_quote_and_capabilities(market: MarketServer, client: httpx.AsyncClient) -> None:
    quote = await replicate(market, client, "hardware", price=HARDWARE).quote(req())
    assert quote.unit is PriceUnit.PER_GPU_SECOND and quote.usd == pytest.approx(0.0014 * 1.5)
    assert (await replicate(market, client, "official").capabilities()).models == frozenset({MODEL})
    with pytest.raises(ValueError, match="owner/name"):
        replicate(market, client, "official", model="flux")


def _hostile(outputs: list[str]) -> httpx.MockTransport:
    """A provider that answers a finished prediction whose output is ``outputs``."""

    def handler(request: httpx.Request) -> httpx.Response:
        urls = {"get": "https://api.replicate.com/v1/predictions/p1", "cancel": "https://api.replicate.com/x"}
        body = {"id": "p1", "status": "succeeded", "output": outputs, "metrics": {}, "urls": urls}
        return httpx.Response(201, json=body)

    return httpx.MockTransport(handler)


async def test_outputs_come_only_from_replicate_hosts_or_inline() -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(png, format="PNG")
    inline = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    async with httpx.AsyncClient(transport=_hostile([inline])) as http:
        provider = ReplicateProvider(name="r", api_token="t", model=MODEL, price=OFFICIAL, client=http)
        generation = await provider.generate(req())
    assert generation.image == png.getvalue() and generation.charged_usd == pytest.approx(0.003)

    async with httpx.AsyncClient(transport=_hostile(["https://evil.example/x.png"])) as http:
        provider = ReplicateProvider(name="r", api_token="t", model=MODEL, price=OFFICIAL, client=http)
        with pytest.raises(BadOutput, match="foreign host") as info:
            await provider.generate(req())
    assert info.value.charged_usd == pytest.approx(0.003)


async def test_owned_client_is_closed(market: MarketServer) -> None:
    provider = ReplicateProvider(
        name="official", base_url=market.base_url("official"), api_token="t", model=MODEL, price=OFFICIAL
    )
    assert (await provider.health()).ok
    await provider.aclose()
    assert provider._client.is_closed
