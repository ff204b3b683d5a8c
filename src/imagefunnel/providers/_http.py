"""HTTP plumbing shared by the Replicate, OpenAI and Together adapters.

Everything here translates foreign failures (httpx, pydantic, undecodable bytes) into
``imagefunnel.errors`` at the boundary, so each adapter reads as its protocol and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from imagefunnel.errors import (
    BadOutput,
    ConnectionLost,
    ImageError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagefunnel.imaging import decode_image
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.providers.pricing import PriceModel

__all__ = [
    "CONNECT_TIMEOUT_S",
    "KEEPALIVE_EXPIRY_S",
    "Wire",
    "client",
    "decode_base64",
    "download",
    "finish",
    "host_allowed",
    "inspect_image",
    "parse",
    "retry_after_s",
    "send",
    "sent_trace",
    "timeouts",
    "transport_error",
]

# A provider API answers a TCP (and TLS) handshake in well under a second; one that has not within
# this long is down or unreachable, and the request was never sent: fail over now, instead of after
# the read timeout a whole generation needs.
CONNECT_TIMEOUT_S = 3.0
# An idle pooled connection is dropped after this long: below the 5 s idle timeout of common
# servers (uvicorn, Node), so a request is never sent on a connection the server is closing (the
# client would see a reset and, for a purchase, not know whether it was taken).
KEEPALIVE_EXPIRY_S = 4.0

_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S)


class Wire(BaseModel):
    """Base of the pydantic models that read provider responses: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


_W = TypeVar("_W", bound=Wire)


def sent_trace(on_sent: Callable[[], None]) -> dict[str, object]:
    """httpx request ``extensions`` that call ``on_sent`` once the request may be on the wire: when
    httpcore's trace reports the body being written (headers are out). Before that a provider cannot
    have it; from then on, it may (a cancellation can land after the last byte left but before the
    write returned, so waiting for the write's end would book a billed request as free)."""

    async def trace(event: str, info: Mapping[str, object]) -> None:
        if event.endswith("send_request_body.started"):
            on_sent()

    return {"trace": trace}


def timeouts(timeout_s: float) -> httpx.Timeout:
    """An adapter client's timeouts: reads bounded by the adapter's own (at most 30 s a call),
    connects by ``CONNECT_TIMEOUT_S``."""
    return httpx.Timeout(min(30.0, timeout_s), connect=min(CONNECT_TIMEOUT_S, timeout_s))


def client(timeout_s: float) -> httpx.AsyncClient:
    """A hosted adapter's HTTP client: :func:`timeouts`, and pooled connections given up before a
    server closes them (``KEEPALIVE_EXPIRY_S``)."""
    return httpx.AsyncClient(
        timeout=timeouts(timeout_s), limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
    )


def transport_error(exc: httpx.HTTPError, what: str, *, provider: str) -> ProviderError:
    """Our error for an httpx failure of ``what`` (``"POST https://..."``). A connect failure
    (refused, or no handshake within the connect timeout) sent nothing; a connection that dropped
    after that (a reset, a server gone mid-answer) may have delivered the request: ``ConnectionLost``,
    which an adapter books as possibly charged where the call buys something."""
    if isinstance(exc, httpx.ConnectTimeout):
        return ProviderUnavailable(f"{what}: connect timeout, nothing sent: {exc!r}", provider=provider)
    if isinstance(exc, httpx.ConnectError):
        return ProviderUnavailable(f"{what}: could not connect, nothing sent: {exc!r}", provider=provider)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"{what}: {exc!r}", provider=provider)
    if isinstance(exc, httpx.TransportError):
        return ConnectionLost(f"{what}: connection lost (reset or dropped): {exc!r}", provider=provider)
    return ProviderUnavailable(f"{what}: {exc!r}", provider=provider)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    json: Mapping[str, object] | None = None,
    request_timeout: httpx.Timeout | None = None,
    on_sent: Callable[[], None] | None = None,
) -> httpx.Response:
    """One API call; 429 → ``RateLimited``, any other non-2xx or transport error → ``ProviderUnavailable``
    (a connection lost after sending: ``ConnectionLost``; see ``transport_error``). ``on_sent`` is
    called once the whole request has been written: before that, the provider cannot have it."""
    extensions = sent_trace(on_sent) if on_sent is not None else {}
    try:
        response = await client.request(
            method,
            url,
            json=json,
            headers=headers,
            timeout=request_timeout or httpx.USE_CLIENT_DEFAULT,
            extensions=extensions,
        )
    except httpx.HTTPError as exc:
        raise transport_error(exc, f"{method} {url}", provider=provider) from exc
    if response.status_code == 429:
        retry_after = retry_after_s(response.headers.get("retry-after"))
        raise RateLimited(f"HTTP 429 {_detail(response)}", provider=provider, retry_after_s=retry_after)
    if not response.is_success:
        detail = f"{method} {url}: HTTP {response.status_code} {_detail(response)}"
        raise ProviderUnavailable(detail, provider=provider)
    return response


def parse(model: type[_W], response: httpx.Response, what: str, *, provider: str) -> _W:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ProviderUnavailable(f"malformed {what} response: {exc}", provider=provider) from exc


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def host_allowed(url: httpx.URL, *, base: httpx.URL, suffixes: Collection[str] = ()) -> bool:
    """Whether ``url`` is on the provider's API host or one of its file hosts (``suffixes``)."""
    host = url.host
    own = host == base.host and url.port == base.port
    cdn = any(host == suffix.lstrip(".") or host.endswith(suffix) for suffix in suffixes)
    return url.scheme in {"http", "https"} and (own or cdn)


def decode_base64(data: str, *, provider: str, charged: float, max_bytes: int) -> bytes:
    """Bytes of a base64 payload or ``data:`` URL (never fetched: the image is in the string)."""
    match = _DATA_URL.match(data)
    payload = match.group("data") if match else data
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise BadOutput(f"output larger than {max_bytes} bytes", provider=provider, charged_usd=charged)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadOutput(f"output is not base64: {exc}", provider=provider, charged_usd=charged) from exc


async def download(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    base: httpx.URL,
    suffixes: Collection[str],
    charged: float,
    max_bytes: int,
) -> bytes:
    """GET an output file from the provider's own hosts only, without our API key, size-capped."""
    target = httpx.URL(url)
    if not host_allowed(target, base=base, suffixes=suffixes):
        raise BadOutput(f"output URL on a foreign host: {url}", provider=provider, charged_usd=charged)
    try:
        async with client.stream("GET", target) as response:
            if response.status_code != 200:
                detail = f"output download: HTTP {response.status_code}"
                raise ProviderUnavailable(detail, provider=provider, charged_usd=charged)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    detail = f"output larger than {max_bytes} bytes"
                    raise BadOutput(detail, provider=provider, charged_usd=charged)
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"output download: {exc!r}", provider=provider, charged_usd=charged) from exc
    except httpx.HTTPError as exc:
        detail = f"output download: {exc!r}"
        raise ProviderUnavailable(detail, provider=provider, charged_usd=charged) from exc
    return b"".join(chunks)


async def inspect_image(
    data: bytes, *, provider: str, charged: float, max_bytes: int, max_pixels: int
) -> tuple[str, int, int]:
    """Content type, width and height of a fully decodable image, else ``BadOutput`` (billed)."""
    try:
        # Decoding is CPU-bound: keep it off the event loop that runs every other request.
        decoded = await asyncio.to_thread(decode_image, data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageError as exc:
        raise BadOutput(
            f"output is not a usable image: {exc}", provider=provider, charged_usd=charged
        ) from exc
    height, width = decoded.rgb.shape[:2]
    return _CONTENT_TYPES.get(decoded.format, "application/octet-stream"), width, height


async def finish(
    *,
    provider: str,
    model: str,
    request: GenerationRequest,
    data: bytes,
    charged: float,
    started: float,
    provider_request_id: str,
    price: PriceModel,
    limits: tuple[int, int],
    meta: Mapping[str, str] | None = None,
) -> Generation:
    """Check that ``data`` is a whole image (``limits``: max bytes, max pixels) and wrap it up."""
    max_bytes, max_pixels = limits
    content_type, width, height = await inspect_image(
        data, provider=provider, charged=charged, max_bytes=max_bytes, max_pixels=max_pixels
    )
    return Generation(
        request_id=request.request_id,
        provider=provider,
        model=model,
        image=data,
        charged_usd=charged,
        latency_s=time.monotonic() - started,
        provider_request_id=provider_request_id,
        content_type=content_type,
        meta={
            "seed": str(request.seed),
            "width": str(width),
            "height": str(height),
            "unit_price_usd": repr(price.unit_price_usd),
            "price_unit": price.unit.value,
            **(meta or {}),
        },
    )


def _detail(response: httpx.Response) -> str:
    # OpenAI, Together and Replicate put the reason in error.message / detail; keep it short.
    return response.text[:200]
