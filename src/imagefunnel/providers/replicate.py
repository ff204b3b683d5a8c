"""Replicate adapter: the predictions API (create, poll, cancel, download) behind ``Provider``.

Wire facts it relies on:

* ``POST /v1/models/{owner}/{name}/predictions`` (official models) or ``POST /v1/predictions``
  with ``version`` answers a prediction object with ``id``, ``status`` and ``urls.get``/``urls.cancel``;
* statuses ``starting`` → ``processing`` → ``succeeded`` | ``failed`` | ``canceled``, plus
  ``aborted`` when a ``Cancel-After`` deadline passes before the prediction started (never billed);
* a running prediction can be cancelled; hardware-priced models bill ``metrics.predict_time``
  seconds even then, official models bill per output image;
* ``GET /v1/predictions/{id}`` reads any prediction again, so one named at creation can be followed
  after a crash (``reattach``);
* ``GET /v1/predictions`` lists the account's predictions newest first (100 a page, ``next`` the
  following page), each with its ``input`` and ``created_at``: one created in the moment before the
  crash let us record its id is found by its input (``find_submitted``);
* outputs are URLs on ``replicate.delivery`` (or inline ``data:`` URIs in sync mode).

Every create carries ``Cancel-After`` (default: the adapter's timeout plus the time a cancel may take),
so a prediction we lose track of (a crash, a dropped connection) stops costing money there too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote as url_quote

import httpx
from pydantic import Field

from imagefunnel.errors import (
    BadOutput,
    ConnectionLost,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagefunnel.providers import _http
from imagefunnel.providers.base import (
    FIND_SKEW,
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    OnSubmitted,
    Quote,
    Submitted,
    carry_charge,
    checked_slots,
)
from imagefunnel.providers.pricing import Observed, PriceModel, quote_for

__all__ = ["ReplicateProvider"]

# Output files may come from the API host itself or Replicate's file CDN, never from anywhere else.
_DELIVERY_SUFFIXES = ("replicate.delivery", ".replicate.delivery")
_MAX_POLL_ERRORS = 3  # transient errors in a row a poll tolerates (the prediction is already paid for)
_CANCEL_TIMEOUT_S = 2.0
_BACKOFF = 1.5
_RUNNING = ("starting", "processing")

Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]


class _Urls(_http.Wire):
    get: str
    cancel: str


class _Metrics(_http.Wire):
    predict_time: float | None = None


class _Prediction(_http.Wire):
    id: str
    status: Status
    output: list[str] | str | None = None
    error: str | None = None
    metrics: _Metrics | None = None
    urls: _Urls

    @property
    def predict_time(self) -> float | None:
        return self.metrics.predict_time if self.metrics is not None else None


class _Listed(_http.Wire):
    id: str
    model: str | None = None
    input: dict[str, object] = Field(default_factory=dict)
    created_at: datetime


class _PredictionPage(_http.Wire):
    next: str | None = None
    results: list[_Listed]


# A prediction is looked for from ``FIND_SKEW`` before the intent was written, over at most this
# many pages of the list (each 100 predictions, newest first).
_FIND_PAGES = 10
# A create whose answer was lost is looked for in the prediction list this many times.
_LOST_CREATE_LOOKS = 2
# Ids of predictions this adapter created lately: a retry of the same request has the same input,
# and a lost create must not be taken for an earlier attempt's prediction.
_CREATED_REMEMBERED = 4096


class ReplicateProvider:
    """One Replicate model, ``owner/name`` (official model) or ``owner/name:version``.

    ``base_url`` stands for ``https://api.replicate.com`` (or an emulator's provider prefix).
    ``price`` says how the model bills (``PerImage`` for official models, ``PerGpuSecond`` for
    hardware-priced ones); ``charged_usd`` applies it to the numbers Replicate reports.
    """

    # Its quote is the configured list price, not the live one: a bill may differ (forecast.price_risk).
    quotes_list_price = True

    def __init__(
        self,
        *,
        name: str,
        api_token: str,
        model: str,
        price: PriceModel,
        base_url: str = "https://api.replicate.com",
        poll_interval_s: float = 0.25,
        max_poll_interval_s: float = 2.0,
        timeout_s: float = 120.0,
        cancel_after_s: float | None = None,
        client: httpx.AsyncClient | None = None,
        output_format: Literal["png", "jpg", "webp"] = "png",
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 40_000_000,
        slots: int | None = None,
    ) -> None:
        self.name = name
        # Requests it runs at once (a providers file's ``slots``): the router's queue model and the
        # quote's forecast both count on it (``Router.slots``); None: learned from latencies.
        self.slots = checked_slots(slots)
        self.model = model
        slug, _, self._version = model.partition(":")
        self._owner, _, self._model_name = slug.partition("/")
        if not self._owner or not self._model_name or "/" in self._model_name:
            raise ValueError(f"model {model!r} must look like 'owner/name' or 'owner/name:version'")
        self._price = price
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._auth = {"Authorization": f"Bearer {api_token}"}
        self._poll_interval_s = poll_interval_s
        self._created: deque[str] = deque(maxlen=_CREATED_REMEMBERED)
        self._max_poll_interval_s = max(poll_interval_s, max_poll_interval_s)
        self._timeout_s = timeout_s
        # By default the provider's deadline falls just after our own cancel would have landed: our
        # cancel is the normal path, the deadline the backstop if this process dies first.
        self._cancel_after_s = timeout_s + _CANCEL_TIMEOUT_S if cancel_after_s is None else cancel_after_s
        self._owns_client = client is None
        self._client = client or _http.client(timeout_s)
        self._output_format = output_format
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels

    # -- Provider protocol ------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({self.model}), max_width=2048, max_height=2048)

    async def quote(self, request: GenerationRequest) -> Quote:
        return quote_for(self._price, provider=self.name, model=self.model, request=request)

    async def health(self) -> Health:
        """``GET /v1/models/{owner}/{name}``: cheap, authenticated, and 503 during an outage."""
        started = time.monotonic()
        url = str(self._base.join(f"v1/models/{self._owner}/{self._model_name}"))
        try:
            await self._send("GET", url)
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
        create: asyncio.Task[_Prediction] | None = None
        sent: list[bool] = []  # set once the create is on the wire: from then on it may exist
        try:
            async with asyncio.timeout(self._timeout_s):
                # Shielded: if we are cancelled mid-create, the create still lands and we can cancel
                # the prediction, instead of paying for one we no longer know about.
                create = asyncio.create_task(self._create(request, sent))
                created = await asyncio.shield(create)
                if on_submitted is not None:  # named before we wait: a crash from here on is recoverable
                    on_submitted(Submitted(request.request_id, self.name, created.id))
                prediction, data, charged = await self._collect(created, request)
        except (TimeoutError, ProviderTimeout) as exc:
            charged = await self._abandon(create, request, sent)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        except asyncio.CancelledError as exc:
            # A hedged or abandoned request: stop paying for it, and say what it cost so far (the
            # router books that figure for a request it cut off).
            carry_charge(exc, await self._abandon(create, request, sent))
            raise
        return await self._generation(request, prediction, data, charged, started)

    async def reattach(self, request: GenerationRequest, provider_request_id: str) -> Generation:
        """Follow a prediction created earlier (by a process that died), ``GET /v1/predictions/{id}``,
        to its end. Its ``Cancel-After`` still bounds what it can cost if it is still running."""
        started = time.monotonic()
        found: _Prediction | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._read(provider_request_id)
                prediction, data, charged = await self._collect(found, request)
        except (TimeoutError, ProviderTimeout) as exc:
            # Not even read back: assume it runs to the end and is billed like a finished one.
            charged = await self._cancel(found, request) if found else self._price.quote(request)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        return await self._generation(request, prediction, data, charged, started)

    async def _collect(
        self, created: _Prediction, request: GenerationRequest
    ) -> tuple[_Prediction, bytes, float]:
        """Poll an accepted prediction to its end; its output (if it succeeded) and its charge."""
        prediction = await self._wait(created)
        charged = self._charge(prediction, request)
        succeeded = prediction.status == "succeeded"
        data = await self._fetch_output(prediction, charged) if succeeded else b""
        return prediction, data, charged

    async def _generation(
        self, request: GenerationRequest, prediction: _Prediction, data: bytes, charged: float, started: float
    ) -> Generation:
        self._raise_unless_succeeded(prediction, charged, time.monotonic() - started)
        extra = {} if prediction.predict_time is None else {"predict_time_s": repr(prediction.predict_time)}
        return await _http.finish(
            provider=self.name,
            model=self.model,
            request=request,
            data=data,
            charged=charged,
            started=started,
            provider_request_id=prediction.id,
            price=self._price,
            limits=(self._max_image_bytes, self._max_image_pixels),
            meta=extra,
        )

    async def find_submitted(
        self, request: GenerationRequest, *, since: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """The id of the one prediction of this model created since ``since`` (less a clock skew)
        with ``request``'s prompt, seed and size, not in ``exclude``; ``None`` if none or several."""
        floor = since - FIND_SKEW
        url = str(self._base.join("v1/predictions"))
        found: list[str] = []
        for _ in range(_FIND_PAGES):
            response = await self._send("GET", url)
            page = _http.parse(_PredictionPage, response, "prediction list", provider=self.name)
            older = False
            for listed in page.results:
                if listed.created_at < floor:
                    older = True  # newest first: the rest are older still
                    break
                if listed.id not in exclude and self._same_input(listed, request):
                    found.append(listed.id)
            if older or page.next is None:
                break
            if not _http.host_allowed(httpx.URL(page.next), base=self._base):
                raise ProviderUnavailable(f"list answered a foreign URL: {page.next}", provider=self.name)
            url = page.next
        return found[0] if len(found) == 1 else None

    def _same_input(self, listed: _Listed, request: GenerationRequest) -> bool:
        model = f"{self._owner}/{self._model_name}"
        sent = listed.input
        return (
            (listed.model is None or listed.model == model)
            and sent.get("prompt") == request.prompt
            and sent.get("seed") == request.seed
            and sent.get("width") == request.width
            and sent.get("height") == request.height
        )

    # -- steps ------------------------------------------------------------------------------
    async def _create(self, request: GenerationRequest, sent: list[bool] | None = None) -> _Prediction:
        body: dict[str, object] = {
            "input": {
                "prompt": request.prompt,
                "width": request.width,
                "height": request.height,
                "aspect_ratio": "custom",
                "seed": request.seed,
                "num_outputs": 1,
                "output_format": self._output_format,
            }
        }
        if self._version:
            body["version"] = self._version
            url = str(self._base.join("v1/predictions"))
        else:
            url = str(self._base.join(f"v1/models/{self._owner}/{self._model_name}/predictions"))
        headers = {"Cancel-After": _duration(self._cancel_after_s)}
        sending = datetime.now(UTC)
        try:
            on_sent = (lambda: sent.append(True)) if sent is not None else None
            response = await self._send("POST", url, json=body, headers=headers, on_sent=on_sent)
        except ConnectionLost as exc:
            # Sent, then the connection went: the prediction may exist (and bill) under an id we
            # never saw. Replicate lists what it created with its input, so look for it there and
            # follow it like any other; not found, its Cancel-After bounds what it can cost, and it
            # is booked as charged, not free.
            found = await self._created_unanswered(request, since=sending)
            if found is not None:
                self._created.append(found.id)
                return found
            detail = f"{exc.args[0]} (the prediction may have been created: booked as possibly charged)"
            raise ConnectionLost(detail, provider=self.name, charged_usd=self._price.quote(request)) from exc
        created = self._checked(self._parse(response), "create")
        self._created.append(created.id)
        return created

    async def _created_unanswered(self, request: GenerationRequest, *, since: datetime) -> _Prediction | None:
        """The prediction a create whose answer was lost made, read back from the prediction list
        (one match with the request's input, none this adapter already holds); None when the list
        shows none (or several), or cannot be read: then it is unknown whether one exists."""
        for look in range(_LOST_CREATE_LOOKS):
            if look:
                await asyncio.sleep(self._poll_interval_s)  # the create may still be on its way in
            try:
                found = await self.find_submitted(request, since=since, exclude=frozenset(self._created))
                if found is not None:
                    return await self._read(found)
            except ProviderError:
                return None
        return None

    async def _read(self, prediction_id: str) -> _Prediction:
        """``GET /v1/predictions/{id}``: a prediction as Replicate holds it now."""
        url = str(self._base.join(f"v1/predictions/{url_quote(prediction_id, safe='')}"))
        return self._checked(self._parse(await self._send("GET", url)), "prediction")

    def _checked(self, prediction: _Prediction, what: str) -> _Prediction:
        for link in (prediction.urls.get, prediction.urls.cancel):
            # These URLs receive our API token: never follow them off the provider's host.
            if not _http.host_allowed(httpx.URL(link), base=self._base):
                raise ProviderUnavailable(f"{what} answered a foreign URL: {link}", provider=self.name)
        return prediction

    async def _wait(self, prediction: _Prediction) -> _Prediction:
        interval = self._poll_interval_s
        errors = 0
        while prediction.status in _RUNNING:
            await asyncio.sleep(interval)
            # Back off: a slow prediction should not cost one API call per poll interval.
            interval = min(interval * _BACKOFF, self._max_poll_interval_s)
            try:
                prediction = self._parse(await self._send("GET", prediction.urls.get))
            except (RateLimited, ProviderUnavailable) as exc:
                errors += 1
                if errors >= _MAX_POLL_ERRORS:
                    raise
                retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
                interval = max(interval, retry_after or 0.0)
                continue
            errors = 0
        return prediction

    def _charge(self, prediction: _Prediction, request: GenerationRequest) -> float:
        """What Replicate bills for a prediction that ended, from its own numbers: an aborted one
        is free; a canceled or failed one (a preempted machine) costs the GPU time it used, if
        GPU-priced; only a succeeded one costs a per-output price."""
        if prediction.status == "aborted" or (
            prediction.status == "failed" and prediction.predict_time is None
        ):
            return 0.0
        produced = prediction.status == "succeeded"
        observed = Observed(
            images=1 if produced else 0,
            width=request.width,
            height=request.height,
            gpu_seconds=prediction.predict_time,
        )
        try:
            return self._price.charge(observed)
        except ValueError:
            # Replicate did not report the number this price needs (no predict_time): bill the
            # estimate, which the ledger reconciles against the invoice later.
            return self._price.quote(request) if produced else 0.0

    def _raise_unless_succeeded(self, prediction: _Prediction, charged: float, elapsed_s: float) -> None:
        if prediction.status == "succeeded":
            return
        if prediction.status == "aborted":
            detail = f"prediction {prediction.id} aborted: its Cancel-After deadline passed before it started"
            raise ProviderTimeout(detail, provider=self.name)
        if prediction.status == "canceled" and elapsed_s >= self._cancel_after_s:
            detail = f"prediction {prediction.id} canceled at its Cancel-After deadline"
            raise ProviderTimeout(detail, provider=self.name, charged_usd=charged)
        detail = f"prediction {prediction.id} {prediction.status}: {prediction.error}"
        raise ProviderUnavailable(detail, provider=self.name, charged_usd=charged)

    async def _fetch_output(self, prediction: _Prediction, charged: float) -> bytes:
        outputs = [prediction.output] if isinstance(prediction.output, str) else prediction.output or []
        if not outputs:
            raise BadOutput("prediction succeeded without output", provider=self.name, charged_usd=charged)
        url = outputs[0]
        if url.startswith("data:"):
            return _http.decode_base64(
                url, provider=self.name, charged=charged, max_bytes=self._max_image_bytes
            )
        return await _http.download(
            self._client,
            url,
            provider=self.name,
            base=self._base,
            suffixes=_DELIVERY_SUFFIXES,
            charged=charged,
            max_bytes=self._max_image_bytes,
        )

    async def _abandon(
        self, create: asyncio.Task[_Prediction] | None, request: GenerationRequest, sent: list[bool]
    ) -> float:
        """Best-effort cancel of a prediction we gave up on; returns what it will probably cost."""
        if create is None:
            return 0.0
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                prediction = await asyncio.shield(create)
        except TimeoutError:
            create.cancel()  # its Cancel-After deadline still bounds what it can cost
            # Still unanswered: once on the wire it may exist under an id we will never see.
            return self._price.quote(request) if sent else 0.0
        except ProviderError as exc:
            return exc.charged_usd  # refused (free), or lost after sending (possibly charged)
        return await self._cancel(prediction, request)

    async def _cancel(self, prediction: _Prediction, request: GenerationRequest) -> float:
        """Cancel a running prediction; returns what it will probably cost."""
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                cancelled = self._parse(await self._send("POST", prediction.urls.cancel))
        except (TimeoutError, ProviderError):
            # Unknown outcome: assume it runs to the end and is billed like a finished one.
            return self._price.quote(request)
        return self._charge(cancelled, request)

    # -- HTTP plumbing ----------------------------------------------------------------------
    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> httpx.Response:
        return await _http.send(
            self._client,
            method,
            url,
            provider=self.name,
            headers=self._auth | (headers or {}),
            json=json,
            on_sent=on_sent,
        )

    def _parse(self, response: httpx.Response) -> _Prediction:
        return _http.parse(_Prediction, response, "prediction", provider=self.name)


def _duration(seconds: float) -> str:
    """A ``Cancel-After`` value: whole seconds when exact, else milliseconds (Go duration syntax)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{math.ceil(seconds * 1000)}ms"
