"""The OpenAI-style images endpoint (``POST {base}/images/generations``), shared by the OpenAI and
Together adapters: one synchronous call whose HTTP timeout is the whole generation.

Such a call cannot be cancelled: once sent, the provider finishes the image and bills it whether or
not we are still listening. A timeout is therefore reported with the quote as its probable charge,
and a cancelled call (a hedged loser) simply stops listening.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping

import httpx

from imagefunnel.errors import BadOutput, ConnectionLost, ProviderError, ProviderTimeout
from imagefunnel.providers import _http
from imagefunnel.providers.base import Health, carry_charge

__all__ = ["ImageDatum", "image_bytes", "post_generation", "probe_models"]


class ImageDatum(_http.Wire):
    """One entry of ``data``: the image inline (``b64_json``) or where to fetch it (``url``)."""

    b64_json: str | None = None
    url: str | None = None


async def post_generation(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    body: Mapping[str, object],
    timeout_s: float,
    charged_if_lost: float,
) -> httpx.Response:
    """POST one generation and wait for it for at most ``timeout_s`` in all."""
    # The read timeout must cover the whole generation: the answer only comes when the image is done.
    per_request = httpx.Timeout(timeout_s, connect=min(_http.CONNECT_TIMEOUT_S, timeout_s))
    sent: list[bool] = []

    def lost() -> float:
        # Cut off before the request was on the wire (waiting for a connection, still writing):
        # the provider cannot have it, so it is free; after, it may be made and billed.
        return charged_if_lost if sent else 0.0

    try:
        async with asyncio.timeout(timeout_s):
            return await _http.send(
                client,
                "POST",
                url,
                provider=provider,
                headers=headers,
                json=body,
                request_timeout=per_request,
                on_sent=lambda: sent.append(True),
            )
    except (TimeoutError, ProviderTimeout) as exc:
        if not sent:
            raise ProviderTimeout(f"request not sent within {timeout_s:g} s", provider=provider) from exc
        detail = f"no image within {timeout_s:g} s (it cannot be cancelled and is probably billed)"
        raise ProviderTimeout(detail, provider=provider, charged_usd=charged_if_lost) from exc
    except ConnectionLost as exc:
        # Sent, then the connection went (a reset, a machine gone): the image may be made and billed
        # with nobody to hand it to. Booked as charged, never as free.
        detail = f"{exc.args[0]} (the request may have been taken: booked as possibly charged)"
        raise ConnectionLost(detail, provider=provider, charged_usd=lost()) from exc
    except asyncio.CancelledError as exc:
        # Cut off by the router (the job's deadline, a hedge won): the request was sent and cannot
        # be cancelled, so the provider still bills it; say so for the router to book.
        carry_charge(exc, lost())
        raise


async def image_bytes(
    data: list[ImageDatum],
    *,
    client: httpx.AsyncClient,
    provider: str,
    base: httpx.URL,
    suffixes: Collection[str],
    charged: float,
    max_bytes: int,
) -> bytes:
    """The first image's bytes: decoded from base64, or downloaded from the provider's own hosts."""
    if not data:
        raise BadOutput("response has no images", provider=provider, charged_usd=charged)
    first = data[0]
    if first.b64_json:
        return _http.decode_base64(first.b64_json, provider=provider, charged=charged, max_bytes=max_bytes)
    if first.url:
        return await _http.download(
            client,
            first.url,
            provider=provider,
            base=base,
            suffixes=suffixes,
            charged=charged,
            max_bytes=max_bytes,
        )
    raise BadOutput("image has neither b64_json nor url", provider=provider, charged_usd=charged)


async def probe_models(
    client: httpx.AsyncClient, base: httpx.URL, *, provider: str, headers: Mapping[str, str]
) -> Health:
    """``GET {base}/models``: cheap, authenticated, and 503 while the provider is down."""
    started = time.monotonic()
    try:
        await _http.send(client, "GET", str(base.join("models")), provider=provider, headers=headers)
    except ProviderError as exc:
        return Health(ok=False, latency_s=time.monotonic() - started, detail=str(exc))
    return Health(ok=True, latency_s=time.monotonic() - started)
