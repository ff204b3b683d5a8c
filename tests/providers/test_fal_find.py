"""FalProvider.find_submitted: naming a request fal accepted before a crash let us record its id,
read from the platform API's request listing of the emulated market over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from imagefunnel.errors import ProviderUnavailable
from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.providers.base import Findable, GenerationRequest, Submitted
from imagefunnel.providers.fal import FalProvider

MODEL = "fal-ai/flux/dev"
TIME_FACTOR = 0.05  # 1 scenario second = 50 ms


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "fal",
        "models": [MODEL],
        "price_usd_per_mp": 0.02,
        "queue_s": [0, 0],
        "processing_s": [2, 2],
    }
    return ProviderProfile.model_validate(base | overrides)


SCENARIO = Scenario(
    name="find-tests",
    seed=7,
    providers=(
        _profile("one"),
        _profile("twice"),
        _profile("late", processing_s=[10, 10]),
        _profile("stuck", queue_s=[1e5, 1e5]),
        _profile("old"),
    ),
)


class Crash(BaseException):
    """The process dying right after fal accepted the submit, before the id could be recorded."""


def fal(market: MarketServer, client: httpx.AsyncClient, name: str, **overrides: Any) -> FalProvider:
    options: dict[str, Any] = {"poll_interval_s": 0.01, "timeout_s": 5.0, "find_wait_s": 3.0}
    return FalProvider(
        name=name,
        base_url=market.base_url(name),
        api_key="fal-test",
        model=MODEL,
        client=client,
        **(options | overrides),
    )


def req(seed: int = 1, *, prompt: str = "a mug on a desk", width: int = 512) -> GenerationRequest:
    return GenerationRequest(f"job-{seed}", MODEL, prompt, width=width, height=512, seed=seed)


async def crash_after_submit(provider: FalProvider, request: GenerationRequest) -> str:
    """Submit ``request`` and die at the moment fal names it; the id fal gave it (for the test)."""
    named: list[str] = []

    def die(accepted: Submitted) -> None:
        named.append(accepted.provider_request_id)
        raise Crash

    with pytest.raises(Crash):
        await provider.generate(request, on_submitted=die)
    return named[0]


async def listed(market: MarketServer, client: httpx.AsyncClient, name: str) -> list[str]:
    url = f"{market.base_url(name)}/v1/models/requests/by-endpoint"
    response = await client.get(url, params={"endpoint_id": MODEL}, headers={"Authorization": "Key k"})
    return [item["request_id"] for item in response.json()["items"]]


async def wait_ended(market: MarketServer, client: httpx.AsyncClient, name: str, *ids: str) -> None:
    for _ in range(200):
        if set(ids) <= set(await listed(market, client, name)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{ids} never ended")


async def test_the_one_request_with_the_same_input_is_found(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "one")
    assert isinstance(provider, Findable)
    since = datetime.now(UTC)
    ours = await crash_after_submit(provider, req(1))
    # Same prompt and size, other seed; same seed, other size; same seed, other prompt: not ours.
    others = [await crash_after_submit(provider, r) for r in (req(2), req(1, width=640), req(1, prompt="x"))]
    await wait_ended(market, client, "one", ours, *others)
    assert await provider.find_submitted(req(1), since=since) == ours
    # An id the ledger already holds is never handed out again.
    assert await provider.find_submitted(req(1), since=since, exclude=frozenset({ours})) is None


async def test_two_requests_with_the_same_input_name_neither(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "twice")
    since = datetime.now(UTC)
    first = await crash_after_submit(provider, req(3))
    second = await crash_after_submit(provider, req(3))
    await wait_ended(market, client, "twice", first, second)
    assert await provider.find_submitted(req(3), since=since) is None  # a guess could be the wrong one
    assert await provider.find_submitted(req(3), since=since, exclude=frozenset({first})) == second


async def test_a_request_sent_before_the_intent_is_not_taken(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "old", find_wait_s=0.0)
    before = datetime.now(UTC)
    earlier = await crash_after_submit(provider, req(4))
    await wait_ended(market, client, "old", earlier)
    # An intent recorded well after it was sent (beyond any clock skew): another attempt's request.
    assert await provider.find_submitted(req(4), since=before + timedelta(minutes=5)) is None
    assert await provider.find_submitted(req(4), since=before) == earlier


async def test_a_request_still_running_is_found_once_it_ends(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "late")
    since = datetime.now(UTC)
    running = await crash_after_submit(provider, req(5))  # ends 0.5 s (10 scenario s) later
    assert running not in await listed(market, client, "late")  # only ended requests are listed
    started = time.monotonic()
    assert await provider.find_submitted(req(5), since=since) == running
    assert 0.2 < time.monotonic() - started < 2.5  # it waited for the end, and not much longer


async def test_the_wait_for_a_request_that_never_ends_is_bounded(
    market: MarketServer, client: httpx.AsyncClient
) -> None:
    provider = fal(market, client, "stuck", find_wait_s=0.4)
    since = datetime.now(UTC)
    await crash_after_submit(provider, req(6))  # queued for a day of scenario time
    started = time.monotonic()
    assert await provider.find_submitted(req(6), since=since) is None
    assert 0.3 < time.monotonic() - started < 1.5
    # An intent older than the wait gets one look, no waiting at all.
    started = time.monotonic()
    assert await provider.find_submitted(req(6), since=since - timedelta(seconds=1)) is None
    assert time.monotonic() - started < 0.3


def _mocked(handler: Any, **overrides: Any) -> tuple[FalProvider, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    options: dict[str, Any] = {"find_wait_s": 0.0} | overrides
    base = options.pop("base_url", "https://queue.fal.run")
    provider = FalProvider(name="fal", base_url=base, api_key="secret", model=MODEL, client=client, **options)
    return provider, client


def _item(request_id: str, request: GenerationRequest, sent_at: datetime) -> dict[str, object]:
    size = {"width": request.width, "height": request.height}
    return {
        "request_id": request_id,
        "endpoint_id": MODEL,
        "sent_at": sent_at.isoformat(),
        "ended_at": (sent_at + timedelta(seconds=3)).isoformat(),
        "status_code": 200,
        "json_input": {"prompt": request.prompt, "seed": request.seed, "image_size": size},
    }


async def test_on_real_fal_the_listing_is_read_from_the_platform_api_page_by_page() -> None:
    since = datetime.now(UTC)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params.get("cursor") is None:
            page = {"items": [_item("theirs", req(8), since)], "next_cursor": "Mg==", "has_more": True}
        else:  # a stamp without a zone is UTC
            ours = _item("ours", req(7), since) | {"sent_at": since.replace(tzinfo=None).isoformat()}
            page = {"items": [ours], "next_cursor": None, "has_more": False}
        return httpx.Response(200, json=page)

    provider, client = _mocked(handler)
    async with client:
        assert await provider.find_submitted(req(7), since=since) == "ours"
    first, second = seen
    assert (first.url.host, first.url.path) == ("api.fal.ai", "/v1/models/requests/by-endpoint")
    assert first.headers["authorization"] == "Key secret"
    params = first.url.params
    assert (params["endpoint_id"], params["expand"], params["limit"]) == (MODEL, "payloads", "100")
    assert datetime.fromisoformat(params["start"]) <= since  # ends since the intent, less a skew
    assert second.url.params["cursor"] == "Mg=="


async def test_paging_stops_at_a_bound() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)  # a listing that claims more forever
        return httpx.Response(200, json={"items": [], "next_cursor": "Mg==", "has_more": True})

    provider, client = _mocked(handler)
    async with client:
        assert await provider.find_submitted(req(7), since=datetime.now(UTC)) is None
    assert 1 < len(calls) <= 10


@pytest.mark.parametrize("body", [b"<html>oops</html>", json.dumps({"items": [{"no_id": 1}]}).encode()])
async def test_a_garbled_listing_is_a_provider_error(body: bytes) -> None:
    provider, client = _mocked(lambda request: httpx.Response(200, content=body))
    async with client:
        with pytest.raises(ProviderUnavailable, match="malformed request list"):
            await provider.find_submitted(req(7), since=datetime.now(UTC))


async def test_an_emulated_provider_lists_under_its_own_prefix_or_an_explicit_url() -> None:
    urls: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        return httpx.Response(200, json={"items": [], "has_more": False})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    common: dict[str, Any] = {
        "name": "fal",
        "api_key": "k",
        "model": MODEL,
        "client": client,
        "find_wait_s": 0,
    }
    provider = FalProvider(base_url="http://market:8000/north", **common)
    explicit = FalProvider(base_url="http://market:8000/north", requests_url="http://audit/list", **common)
    async with client:
        await provider.find_submitted(req(7), since=datetime.now(UTC))
        await explicit.find_submitted(req(7), since=datetime.now(UTC))
    assert [str(u.copy_with(query=None)) for u in urls] == [
        "http://market:8000/north/v1/models/requests/by-endpoint",
        "http://audit/list",
    ]
