"""What each adapter books when the connection itself fails: nothing for a request that never left
(refused, no handshake), the quote for one that left and lost its answer (it may be billed), and
the GPU time a preempted Replicate prediction used."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from imagefunnel.errors import ConnectionLost, ProviderUnavailable
from imagefunnel.market import MarketServer, Scenario
from imagefunnel.market.serving import KEEP_ALIVE_S
from imagefunnel.providers import _http
from imagefunnel.providers.base import GenerationRequest, Provider, abandoned_charge
from imagefunnel.providers.fal import FalProvider
from imagefunnel.providers.pricing import PerGpuSecond, PerImage, PerMegapixel
from imagefunnel.providers.replicate import ReplicateProvider
from imagefunnel.providers.together import TogetherProvider

TIME_FACTOR = 0.05
FAL_MODEL = "fal-ai/flux/dev"
REPLICATE_MODEL = "black-forest-labs/flux-schnell"
TOGETHER_MODEL = "black-forest-labs/FLUX.1-schnell"
ALWAYS = {"start_s": 0, "end_s": 1e9, "fraction": 1.0}
RESET = {**ALWAYS, "kind": "connection_reset", "at": "response"}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "fal": {"protocol": "fal", "models": [FAL_MODEL], "price_usd_per_mp": 0.02},
    "replicate": {
        "protocol": "replicate",
        "models": [REPLICATE_MODEL],
        "pricing": {"unit": "image", "usd": 0.01},
    },
    "together": {"protocol": "together", "models": [TOGETHER_MODEL], "price_usd_per_mp": 0.02},
}


def _profile(name: str, protocol: str, *faults: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {"name": name, "queue_s": [0, 0], "processing_s": [0.2, 0.2], "faults": list(faults)}
    return base | PROTOCOLS[protocol] | overrides


SCENARIO = Scenario.model_validate(
    {
        "name": "connection-faults",
        "seed": 11,
        "providers": [
            *(_profile(f"{p}-reset", p, RESET) for p in PROTOCOLS),
            _profile("replicate-reset-early", "replicate", {**RESET, "at": "request"}),
            *(
                _profile(f"{p}-{mode}", p, {"kind": "unreachable", "mode": mode})
                for p in PROTOCOLS
                for mode in ("refused", "timeout")
            ),
            _profile(
                "replicate-spot",
                "replicate",
                {**ALWAYS, "kind": "preemption", "at_fraction": [0.5, 0.5]},
                pricing={"unit": "gpu_second", "usd": 0.002},
                processing_s=[4.0, 4.0],
            ),
        ],
    }
)


def adapter(market: MarketServer, client: httpx.AsyncClient, name: str) -> Provider:
    protocol = name.partition("-")[0]
    url = market.base_url(name)
    if protocol == "fal":
        return FalProvider(
            name=name,
            base_url=url,
            api_key="k",
            model=FAL_MODEL,
            client=client,
            timeout_s=5.0,
            poll_interval_s=0.02,
        )
    if protocol == "together":
        return TogetherProvider(
            name=name,
            base_url=f"{url}/v1",
            api_key="k",
            model=TOGETHER_MODEL,
            price=PerMegapixel(usd=0.02),
            client=client,
            timeout_s=5.0,
        )
    price = PerGpuSecond.per_second(0.002, expected_s=4.0) if name == "replicate-spot" else PerImage(usd=0.01)
    return ReplicateProvider(
        name=name,
        base_url=url,
        api_token="r",
        model=REPLICATE_MODEL,
        price=price,
        client=client,
        timeout_s=10.0,
        poll_interval_s=0.02,
    )


def req(seed: int = 1) -> GenerationRequest:
    return GenerationRequest(request_id=f"r{seed}", model="m", prompt="p", width=512, height=512, seed=seed)


@pytest.mark.parametrize("protocol", ["replicate", "fal"])
async def test_a_submit_whose_answer_was_lost_is_found_and_followed(
    market: MarketServer, protocol: str
) -> None:
    # Replicate lists the predictions it created with their input, fal the requests that ended:
    # the one the reset kept from us is read back from there, followed to its end, and charged
    # what the market bills.
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
        provider = adapter(market, client, f"{protocol}-reset")
        generation = await provider.generate(req())
    market.advance(100)
    [record] = [r for r in market.billing() if r.provider == f"{protocol}-reset"]
    assert generation.image and generation.provider_request_id == record.request_id
    assert generation.charged_usd == pytest.approx(record.usd)


async def test_a_replicate_create_the_list_does_not_show_stays_booked_as_possibly_charged(
    market: MarketServer,
) -> None:
    # Reset before Replicate took it: nothing to find, so it is unknown from here whether it
    # exists; booked at its quote (its Cancel-After bounds what it could cost), never as free.
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
        provider = adapter(market, client, "replicate-reset-early")
        quote = await provider.quote(req())
        with pytest.raises(ConnectionLost, match="possibly charged") as info:
            await provider.generate(req())
    assert info.value.charged_usd == pytest.approx(quote.usd)
    assert not [r for r in market.billing() if r.provider == "replicate-reset-early"]


@pytest.mark.parametrize("protocol", [p for p in PROTOCOLS if p not in ("replicate", "fal")])
async def test_a_reset_after_sending_is_booked_as_what_the_provider_bills(
    market: MarketServer, protocol: str
) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
        provider = adapter(market, client, f"{protocol}-reset")
        quote = await provider.quote(req())
        with pytest.raises(ConnectionLost, match="possibly charged") as info:
            await provider.generate(req())
    market.advance(100)
    [record] = [r for r in market.billing() if r.provider == f"{protocol}-reset"]
    assert info.value.charged_usd == pytest.approx(record.usd) == pytest.approx(quote.usd)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize(
    ("mode", "words"), [("refused", "could not connect"), ("timeout", "connect timeout")]
)
async def test_an_unreachable_provider_fails_as_unavailable_and_books_nothing(
    market: MarketServer, protocol: str, mode: str, words: str
) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=0.3)) as client:
        provider = adapter(market, client, f"{protocol}-{mode}")
        with pytest.raises(ProviderUnavailable, match=words) as info:
            if protocol == "fal":  # fal prices from the provider before it submits: that call fails first
                await provider.quote(req())
            await provider.generate(req())
    assert not isinstance(info.value, ConnectionLost) and info.value.charged_usd == 0.0


async def test_a_preempted_gpu_priced_prediction_is_charged_the_gpu_time_it_used(
    market: MarketServer,
) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        with pytest.raises(ProviderUnavailable, match="preempted") as info:
            await adapter(market, client, "replicate-spot").generate(req(3))
    [record] = [r for r in market.billing() if r.provider == "replicate-spot"]
    assert record.quantity == pytest.approx(2.0)
    assert info.value.charged_usd == pytest.approx(record.usd)


async def test_default_clients_connect_within_a_few_seconds_whatever_the_read_timeout() -> None:
    provider = TogetherProvider(
        name="t", api_key="k", model=TOGETHER_MODEL, price=PerMegapixel(usd=0.02), timeout_s=120.0
    )
    try:
        timeout = provider._client.timeout  # the adapter's own client
    finally:
        await provider.aclose()
    assert timeout.connect is not None and timeout.read is not None
    assert timeout.connect <= 3.0 < timeout.read


async def test_a_synchronous_call_cut_off_before_it_was_sent_carries_no_charge(market: MarketServer) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=5.0)) as client:
        provider = adapter(market, client, "together-timeout")  # stuck in the handshake
        task = asyncio.create_task(provider.generate(req(4)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await task
    assert abandoned_charge(info.value) == 0.0


async def test_a_pooled_connection_is_given_up_before_the_emulated_server_would_close_it() -> None:
    """A request sent on an idle connection the server is closing meets a reset, which a purchase
    must book as possibly charged: the client's pool expiry sits below the server's idle timeout
    (the emulator keeps idle connections as a hosted API's load balancer does)."""
    client = _http.client(10.0)
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._keepalive_expiry == _http.KEEPALIVE_EXPIRY_S < 5.0 < KEEP_ALIVE_S
    finally:
        await client.aclose()
