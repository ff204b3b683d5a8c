"""fal.ai adapter: the queue API (submit, poll, fetch, download, cancel) behind ``Provider``.

Wire facts it relies on:

* ``POST {queue}/{model_id}`` answers ``request_id`` plus ``status_url``/``response_url``/``cancel_url``;
* those URLs are ``{queue}/{owner}/{alias}/requests/{request_id}[/status|/cancel]``, so a request
  named at submission can be followed again by its id alone (``reattach``, after a crash);
* a failed or cancelled request also ends ``COMPLETED``, with ``error``/``error_type`` set;
* only a request still queued can be cancelled (202), and 5xx failures are not billed;
* prices come from the platform API, ``GET https://api.fal.ai/v1/models/pricing?endpoint_id=...``
  → ``{"prices": [{"endpoint_id", "unit_price", "unit", "currency"}]}``;
* the platform API lists an endpoint's requests, ``GET .../v1/models/requests/by-endpoint`` →
  ``{"items": [{"request_id", "sent_at", "ended_at", "json_input", ...}], "next_cursor", "has_more"}``
  (``expand=payloads`` for ``json_input``), sorted by end time: only requests that have *ended*
  are there. A request accepted in the moment before a crash let us record its id is found by its
  input once it ends (``find_submitted``);
* file inputs (``image_url``) take a URL *or a base64 data URI*, so a reference photo travels inside
  the submit body, to an image-to-image endpoint (``fal-ai/flux/dev/image-to-image``).

Every foreign error (httpx, pydantic, PIL) is translated into ``imagefunnel.errors`` here.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar
from urllib.parse import quote as url_quote

import httpx
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from imagefunnel.errors import (
    BadOutput,
    ConnectionLost,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagefunnel.providers import _http
from imagefunnel.providers._http import retry_after_s
from imagefunnel.providers.base import (
    FIND_SKEW,
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    OnSubmitted,
    PriceUnit,
    Quote,
    Submitted,
    carry_charge,
    checked_slots,
)

__all__ = ["FalProvider"]

_REAL_QUEUE_HOST = "queue.fal.run"
_REAL_PRICING_URL = "https://api.fal.ai/v1/models/pricing"
_REAL_REQUESTS_URL = "https://api.fal.ai/v1/models/requests/by-endpoint"
# Outputs may only be downloaded from the provider itself or fal's CDN (never an arbitrary host).
_FAL_CDN_SUFFIXES = (".fal.media", ".fal.ai", ".fal.run")
_UNITS = dict.fromkeys(("megapixels", "megapixel"), PriceUnit.PER_MEGAPIXEL) | dict.fromkeys(
    ("image", "images"), PriceUnit.PER_IMAGE
)
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
# Status polls tolerate this many transient errors in a row (429, 5xx, connection) before giving up.
_MAX_POLL_ERRORS = 3
_CANCEL_TIMEOUT_S = 2.0
# Finding a request by its input (from ``FIND_SKEW`` before the intent): how many pages of the
# listing are read (100 a page: the requests an endpoint ended since the intent), and the pause
# between looks while waiting for a request that may still be queued or running to end.
_FIND_PAGES = 10
_FIND_PAGE_SIZE = 100
_FIND_MAX_PAUSE_S = 2.0
# Ids of requests this adapter submitted lately: a retry of the same request has the same input,
# and a submit whose answer was lost must not be taken for an earlier attempt's request.
_SUBMITTED_REMEMBERED = 4096


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_W = TypeVar("_W", bound=_Wire)


class _Price(_Wire):
    endpoint_id: str
    unit_price: float
    unit: str
    currency: str = "USD"


class _Pricing(_Wire):
    prices: list[_Price]


class _Handle(_Wire):
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class _Status(_Wire):
    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    error: str | None = None
    error_type: str | None = None


class _File(_Wire):
    url: str
    width: int | None = None
    height: int | None = None
    content_type: str | None = None


class _Result(_Wire):
    images: list[_File]
    seed: int | None = None


class _Listed(_Wire):
    request_id: str
    endpoint_id: str | None = None
    sent_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    json_input: dict[str, object] | None = None

    @field_validator("sent_at", "started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # The platform API writes UTC; a stamp without a zone is read as UTC, not compared naively.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @property
    def sent(self) -> datetime | None:
        """When fal took it (its earliest timestamp the listing gives)."""
        return self.sent_at or self.started_at or self.ended_at


class _RequestPage(_Wire):
    items: list[_Listed]
    next_cursor: str | None = None
    has_more: bool = False


@dataclass(frozen=True, slots=True)
class _UnitPrice:
    usd: float
    unit: PriceUnit
    fetched_at: float

    def cost(self, megapixels: float) -> float:
        return self.usd * megapixels if self.unit is PriceUnit.PER_MEGAPIXEL else self.usd


class FalProvider:
    """One fal endpoint (``model``, e.g. ``fal-ai/flux/dev``) reached through fal's queue API.

    ``base_url`` stands for ``https://queue.fal.run`` (or an emulator's provider prefix). The price
    comes from ``pricing_url``: fal's platform API for the real queue host, else
    ``{base_url}/v1/models/pricing``; the request listing ``find_submitted`` reads likewise from
    ``requests_url``. ``charged_usd`` is that unit price times the output size: an estimate the
    ledger reconciles against the provider's bill. Requests with reference photos go to
    ``reference_endpoint`` (with the first photo as ``image_url``); without one configured, the
    adapter declares it cannot take them, and the router sends them elsewhere. ``find_wait_s``
    (default: ``timeout_s``): how long after an attempt's intent ``find_submitted`` keeps looking
    for it in the listing, which shows a request only once it has ended.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        model: str,
        poll_interval_s: float = 0.25,
        timeout_s: float = 120.0,
        client: httpx.AsyncClient | None = None,
        pricing_url: str | None = None,
        price_ttl_s: float = 5.0,
        output_format: Literal["png", "jpeg"] = "png",
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 40_000_000,
        reference_endpoint: str | None = None,
        slots: int | None = None,
        requests_url: str | None = None,
        find_wait_s: float | None = None,
    ) -> None:
        self.name = name
        # Requests it runs at once (a providers file's ``slots``): the router's queue model and the
        # quote's forecast both count on it (``Router.slots``); None: learned from latencies.
        self.slots = checked_slots(slots)
        self.model = model
        self._reference_endpoint = reference_endpoint
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._auth = {"Authorization": f"Key {api_key}"}
        self._poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client or _http.client(timeout_s)
        on_real_fal = self._base.host == _REAL_QUEUE_HOST
        if pricing_url is None:
            pricing_url = _REAL_PRICING_URL if on_real_fal else str(self._base.join("v1/models/pricing"))
        self._pricing_url = pricing_url
        if requests_url is None:
            own = str(self._base.join("v1/models/requests/by-endpoint"))
            requests_url = _REAL_REQUESTS_URL if on_real_fal else own
        self._requests_url = requests_url
        if find_wait_s is not None and find_wait_s < 0:
            raise ValueError("find_wait_s must be ≥ 0")
        self._find_wait_s = timeout_s if find_wait_s is None else find_wait_s
        self._submitted: deque[str] = deque(maxlen=_SUBMITTED_REMEMBERED)
        self._price_ttl_s = price_ttl_s
        self._output_format = output_format
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._price: _UnitPrice | None = None

    # -- Provider protocol ------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        refs = self._reference_endpoint is not None  # reference photos need an endpoint that takes them
        return Capabilities(frozenset({self.model}), 2048, 2048, supports_reference_images=refs)

    async def quote(self, request: GenerationRequest) -> Quote:
        price = await self._unit_price()
        return Quote(
            provider=self.name,
            model=self.model,
            usd=price.cost(request.megapixels),
            unit=price.unit,
            unit_price_usd=price.usd,
        )

    async def health(self) -> Health:
        """One pricing call: cheap, authenticated, and it answers 503 while the provider is down."""
        started = time.monotonic()
        try:
            await self._unit_price(refresh=True)
        except ProviderError as exc:
            return Health(ok=False, latency_s=time.monotonic() - started, detail=str(exc))
        return Health(ok=True, latency_s=time.monotonic() - started)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def generate(
        self, request: GenerationRequest, *, on_submitted: OnSubmitted | None = None
    ) -> Generation:
        started = time.monotonic()
        submit: asyncio.Task[_Handle] | None = None
        sent: list[bool] = []  # set once the submit is on the wire: from then on it may be queued
        try:
            async with asyncio.timeout(self._timeout_s):
                price = await self._unit_price()
                # Shielded: if we are cancelled mid-submit, the submit still lands and we can cancel
                # it at the provider, instead of leaving a request we would pay for without knowing.
                submit = asyncio.create_task(self._submit(request, sent))
                handle = await asyncio.shield(submit)
                if on_submitted is not None:  # named before we wait: a crash from here on is recoverable
                    on_submitted(Submitted(request.request_id, self.name, handle.request_id))
                result, data, charged = await self._collect(handle, price, request)
        except (TimeoutError, ProviderTimeout) as exc:
            charged = await self._abandon(submit, request, sent)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        except asyncio.CancelledError as exc:
            # A hedged or abandoned request: stop paying for it if it has not started yet, and say
            # what it costs (the router books that figure for a request it cut off).
            carry_charge(exc, await self._abandon(submit, request, sent))
            raise
        return await self._generation(request, handle, price, result, data, charged, started)

    async def reattach(self, request: GenerationRequest, provider_request_id: str) -> Generation:
        """Follow a request submitted earlier (by a process that died) to its result. Its status and
        result URLs are rebuilt from the id the way fal makes them (the app's owner/alias only)."""
        started = time.monotonic()
        handle = self._handle_for(request, provider_request_id)
        try:
            async with asyncio.timeout(self._timeout_s):
                price = await self._unit_price()
                result, data, charged = await self._collect(handle, price, request)
        except (TimeoutError, ProviderTimeout) as exc:
            charged = await self._cancel(handle, request)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        return await self._generation(request, handle, price, result, data, charged, started)

    async def find_submitted(
        self, request: GenerationRequest, *, since: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """The id of the one request of ``request``'s endpoint sent since ``since`` (less a clock
        skew) with its prompt, seed and size, not in ``exclude``; ``None`` if none or several.

        fal lists a request only once it has ended, so one accepted just before a crash may still
        be queued or running: while none matches, the listing is read again (backing off) until
        ``find_wait_s`` after ``since``. By default that is the adapter's ``timeout_s``, the
        longest the crashed process itself would have waited for it; a request that has not
        ended by then is left unnamed (closed at its quote). The wait is bounded from the call
        too, so an intent from a clock running ahead cannot stretch it."""
        endpoint = self._endpoint(request)
        floor = since - FIND_SKEW
        wait = timedelta(seconds=self._find_wait_s)
        give_up = min(since, datetime.now(UTC)) + wait
        pause = self._poll_interval_s
        while True:
            found = await self._listed_matches(request, endpoint, floor, exclude)
            if found:
                # Two or more: a guess could attach another job's (or attempt's) image.
                return found[0] if len(found) == 1 else None
            left = (give_up - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, _FIND_MAX_PAUSE_S)

    async def _listed_matches(
        self, request: GenerationRequest, endpoint: str, floor: datetime, exclude: frozenset[str]
    ) -> list[str]:
        """Ids of the ended requests of ``endpoint`` sent since ``floor`` with ``request``'s input."""
        params = {
            "endpoint_id": endpoint,
            "start": floor.astimezone(UTC).isoformat().replace("+00:00", "Z"),  # a bound on ended_at
            "expand": "payloads",
            "limit": str(_FIND_PAGE_SIZE),
        }
        found: list[str] = []
        for _ in range(_FIND_PAGES):
            response = await self._send("GET", self._requests_url, params=params)
            page = self._parse(_RequestPage, response, "request list")
            found += [
                item.request_id
                for item in page.items
                if item.request_id not in exclude and self._same_input(item, request, endpoint, floor)
            ]
            if not page.has_more or not page.next_cursor:
                break
            params["cursor"] = page.next_cursor
        return found

    def _same_input(
        self, listed: _Listed, request: GenerationRequest, endpoint: str, floor: datetime
    ) -> bool:
        sent, body = listed.sent, listed.json_input or {}
        return (
            (listed.endpoint_id is None or listed.endpoint_id == endpoint)
            and sent is not None
            and sent >= floor
            # As ``_submit`` sends them.
            and body.get("prompt") == request.prompt
            and body.get("seed") == request.seed
            and body.get("image_size") == {"width": request.width, "height": request.height}
        )

    def _endpoint(self, request: GenerationRequest) -> str:
        """The endpoint ``request`` is submitted to: the reference endpoint when it carries photos."""
        if request.reference_images and self._reference_endpoint is not None:
            return self._reference_endpoint
        return self.model

    async def _collect(
        self, handle: _Handle, price: _UnitPrice, request: GenerationRequest
    ) -> tuple[_Result, bytes, float]:
        """Wait for an accepted request, read its result and download the image."""
        await self._wait(handle)
        result = await self._result(handle)
        image, charged = self._first_image(result, price, request)
        return result, await self._download(image.url, charged), charged

    async def _generation(
        self,
        request: GenerationRequest,
        handle: _Handle,
        price: _UnitPrice,
        result: _Result,
        data: bytes,
        charged: float,
        started: float,
    ) -> Generation:
        # Decoding is CPU-bound: keep it off the event loop that runs every other request.
        content_type, width, height = await asyncio.to_thread(self._inspect, data, charged)
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=self.model,
            image=data,
            charged_usd=charged,
            latency_s=time.monotonic() - started,
            provider_request_id=handle.request_id,
            content_type=content_type,
            meta={
                "seed": str(result.seed if result.seed is not None else request.seed),
                "width": str(width),
                "height": str(height),
                "unit_price_usd": repr(price.usd),
                "price_unit": price.unit.value,
            },
        )

    # -- steps ------------------------------------------------------------------------------
    async def _unit_price(self, *, refresh: bool = False) -> _UnitPrice:
        cached = self._price
        if not refresh and cached is not None and time.monotonic() - cached.fetched_at < self._price_ttl_s:
            return cached
        response = await self._send("GET", self._pricing_url, params={"endpoint_id": self.model})
        pricing = self._parse(_Pricing, response, "pricing")
        entry = next((p for p in pricing.prices if p.endpoint_id == self.model), None)
        if entry is None:
            raise ProviderUnavailable(f"no price listed for {self.model}", provider=self.name)
        unit = _UNITS.get(entry.unit.lower())
        if unit is None or entry.currency.upper() != "USD":
            raise ProviderUnavailable(
                f"unsupported price: {entry.unit} in {entry.currency}", provider=self.name
            )
        self._price = _UnitPrice(usd=entry.unit_price, unit=unit, fetched_at=time.monotonic())
        return self._price

    async def _find_lost_submit(self, request: GenerationRequest, *, since: datetime) -> str | None:
        """The id of the request a submit whose answer was lost made (none this adapter already
        holds: a retry has the same input), or None: not listed, listed twice, or no listing."""
        try:
            return await self.find_submitted(request, since=since, exclude=frozenset(self._submitted))
        except ProviderError:
            return None

    def _handle_for(self, request: GenerationRequest, provider_request_id: str) -> _Handle:
        """A request's status, result and cancel URLs, rebuilt from its id the way fal makes them."""
        app_id = "/".join(self._endpoint(request).split("/")[:2])
        base = str(self._base.join(f"{app_id}/requests/{url_quote(provider_request_id, safe='')}"))
        return _Handle(
            request_id=provider_request_id,
            status_url=f"{base}/status",
            response_url=base,
            cancel_url=f"{base}/cancel",
        )

    async def _submit(self, request: GenerationRequest, sent: list[bool] | None = None) -> _Handle:
        body = {
            "prompt": request.prompt,
            "image_size": {"width": request.width, "height": request.height},
            "seed": request.seed,
            "num_images": 1,
            "output_format": self._output_format,
        }
        endpoint = self._endpoint(request)
        if request.reference_images:
            if self._reference_endpoint is None:
                raise ProviderUnavailable("no reference_endpoint configured", provider=self.name)
            body["image_url"] = _data_uri(request.reference_images[0])
        sending = datetime.now(UTC)
        try:
            on_sent = (lambda: sent.append(True)) if sent is not None else None
            response = await self._send("POST", str(self._base.join(endpoint)), json=body, on_sent=on_sent)
        except ConnectionLost as exc:
            # Sent, then the connection went: fal may have queued it (and will bill its output)
            # under an id we never saw. Its request listing shows it once it has ended: found
            # there (within this attempt's timeout), it is followed like any other; not found,
            # it is booked as charged, not free.
            found = await self._find_lost_submit(request, since=sending)
            if found is not None:
                self._submitted.append(found)
                return self._handle_for(request, found)
            charged = self._price.cost(request.megapixels) if self._price else 0.0
            detail = f"{exc.args[0]} (the request may have been queued: booked as possibly charged)"
            raise ConnectionLost(detail, provider=self.name, charged_usd=charged) from exc
        handle = self._parse(_Handle, response, "submit")
        self._submitted.append(handle.request_id)
        for url in (handle.status_url, handle.response_url, handle.cancel_url):
            # These URLs receive our API key: never follow them off the provider's host.
            if httpx.URL(url).host != self._base.host:
                raise ProviderUnavailable(f"submit answered a foreign URL: {url}", provider=self.name)
        return handle

    async def _wait(self, handle: _Handle) -> None:
        errors = 0
        while True:
            try:
                response = await self._send("GET", handle.status_url, params={"logs": "0"})
                status = self._parse(_Status, response, "status")
            except (RateLimited, ProviderUnavailable) as exc:
                # The request is already paid for if it runs: ride out a short blip instead of losing it.
                errors += 1
                if errors >= _MAX_POLL_ERRORS:
                    raise
                retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
                await asyncio.sleep(max(self._poll_interval_s, retry_after or 0.0))
                continue
            errors = 0
            if status.status == "COMPLETED":
                if status.error is not None or status.error_type is not None:
                    detail = f"request failed ({status.error_type}): {status.error}"
                    raise ProviderUnavailable(detail, provider=self.name)
                return
            await asyncio.sleep(self._poll_interval_s)

    async def _result(self, handle: _Handle) -> _Result:
        response = await self._send("GET", handle.response_url)
        return self._parse(_Result, response, "result")

    def _first_image(
        self, result: _Result, price: _UnitPrice, request: GenerationRequest
    ) -> tuple[_File, float]:
        if not result.images:
            raise BadOutput("result has no images", provider=self.name)
        image = result.images[0]
        # fal bills the size it produced; fall back to the size we asked for if it does not say.
        megapixels = image.width * image.height / 1e6 if image.width and image.height else request.megapixels
        return image, price.cost(megapixels)

    async def _download(self, url: str, charged: float) -> bytes:
        target = httpx.URL(url)
        host = target.host
        allowed = host == self._base.host or host == "fal.media" or host.endswith(_FAL_CDN_SUFFIXES)
        if target.scheme not in {"http", "https"} or not allowed:
            raise BadOutput(f"output URL on a foreign host: {url}", provider=self.name, charged_usd=charged)
        # No Authorization header here: output files are public, and the key stays with the API.
        try:
            async with self._client.stream("GET", target) as response:
                if response.status_code != 200:
                    detail = f"output download: HTTP {response.status_code}"
                    raise ProviderUnavailable(detail, provider=self.name, charged_usd=charged)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_image_bytes:
                        detail = f"output larger than {self._max_image_bytes} bytes"
                        raise BadOutput(detail, provider=self.name, charged_usd=charged)
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"output download: {exc!r}", provider=self.name) from exc
        except httpx.HTTPError as exc:
            detail = f"output download: {exc!r}"
            raise ProviderUnavailable(detail, provider=self.name, charged_usd=charged) from exc
        return b"".join(chunks)

    def _inspect(self, data: bytes, charged: float) -> tuple[str, int, int]:
        """Content type and size of a fully decodable PNG or JPEG, else ``BadOutput``."""
        content_type = next((kind for magic, kind in _MAGIC.items() if data.startswith(magic)), None)
        if content_type is None:
            raise BadOutput("output is not a PNG or JPEG", provider=self.name, charged_usd=charged)
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > self._max_image_pixels:
                    raise BadOutput(
                        f"output has {width}x{height} pixels", provider=self.name, charged_usd=charged
                    )
                img.load()  # decodes every pixel: truncated or corrupt data fails here
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            detail = f"output does not decode: {exc}"
            raise BadOutput(detail, provider=self.name, charged_usd=charged) from exc
        return content_type, width, height

    async def _abandon(
        self, submit: asyncio.Task[_Handle] | None, request: GenerationRequest, sent: list[bool]
    ) -> float:
        """Best-effort cancel of a request we gave up on; returns what it will probably still cost."""
        if submit is None:
            return 0.0
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                handle = await asyncio.shield(submit)
        except TimeoutError:
            submit.cancel()
            # Still unanswered: once on the wire it may be queued under an id we will never see.
            return self._price.cost(request.megapixels) if sent and self._price else 0.0
        except ProviderError as exc:
            return exc.charged_usd  # refused (free), or lost after sending (possibly charged)
        return await self._cancel(handle, request)

    async def _cancel(self, handle: _Handle, request: GenerationRequest) -> float:
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                response = await self._client.put(handle.cancel_url, headers=self._auth)
        except (TimeoutError, httpx.HTTPError):
            response = None
        if response is not None and response.status_code == 202:
            return 0.0
        # Refused (already running or done) or unknown: it will most likely be billed.
        return self._price.cost(request.megapixels) if self._price else 0.0

    # -- HTTP plumbing ----------------------------------------------------------------------
    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, object] | None = None,
        params: dict[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> httpx.Response:
        try:
            extensions = _http.sent_trace(on_sent) if on_sent is not None else {}
            response = await self._client.request(
                method, url, json=json, params=params, headers=self._auth, extensions=extensions
            )
        except httpx.HTTPError as exc:
            raise _http.transport_error(exc, f"{method} {url}", provider=self.name) from exc
        if response.status_code == 429:
            retry_after = retry_after_s(response.headers.get("retry-after"))
            raise RateLimited("HTTP 429", provider=self.name, retry_after_s=retry_after)
        if not response.is_success:
            detail = response.text[:200]
            raise ProviderUnavailable(
                f"{method} {url}: HTTP {response.status_code} {detail}", provider=self.name
            )
        return response

    def _parse(self, model: type[_W], response: httpx.Response, what: str) -> _W:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProviderUnavailable(f"malformed {what} response: {exc}", provider=self.name) from exc


def _data_uri(data: bytes) -> str:
    """A file input fal decodes itself, so the photo needs no upload (and no URL) of its own."""
    kind = next((t for magic, t in _MAGIC.items() if data.startswith(magic)), "application/octet-stream")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
