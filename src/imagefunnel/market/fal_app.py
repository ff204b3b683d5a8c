"""fal's queue protocol, emulated for every fal-protocol provider of a ``Market``.

Provider ``P``'s base URL is ``{server}/{P}``: it stands for both ``https://queue.fal.run`` and the
platform API ``https://api.fal.ai`` (pricing lives at ``{server}/{P}/v1/models/pricing``). Output
files are served from ``{server}/files/...``, like fal's CDN: public, outside the provider prefix.

    POST {P}/{owner}/{alias}[/{path}]             submit → request_id + status/response/cancel URLs
    GET  {P}/{owner}/{alias}/requests/{id}/status IN_QUEUE | IN_PROGRESS | COMPLETED (+error)
    GET  {P}/{owner}/{alias}/requests/{id}        the result (or fal's error body)
    PUT  {P}/{owner}/{alias}/requests/{id}/cancel 202 CANCELLATION_REQUESTED while queued, else 400
    GET  {P}/v1/models/pricing?endpoint_id=...    {prices: [{endpoint_id, unit_price, unit, currency}]}
    GET  {P}/v1/models/requests/by-endpoint?endpoint_id=...
                                                  the caller's ended requests, newest ended first:
                                                  {items, next_cursor, has_more} (see ``fal_listing``)

A subject photo travels as a file input: ``image_url`` on an image-to-image endpoint
(``{model}/image-to-image``, ``{model}/redux``; a text-to-image endpoint ignores it, as fal's do) or
``reference_image_url`` (PuLID-style identity endpoints). fal accepts a URL or a base64 ``data:`` URI
there; the emulator decodes data URIs and fetches no URL (so a URL names an unknown subject).

Not emulated: ``status/stream`` (SSE), webhooks (``fal_webhook``), ``num_images`` > 1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
import threading
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagefunnel.market import _shared
from imagefunnel.market.engine import ImageInput, Job, Market, Phase, Rejection
from imagefunnel.market.fal_listing import ListedRequest, page_of, parse_query

__all__ = ["FalInput", "create_fal_app"]

_AUTH = re.compile(r"^Key \S+$")
# Room for a reference photo of a few MB as a data URI (base64 adds a third).
_MAX_BODY_BYTES = 10_000_000
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S)
# Submit subpaths that take ``image_url`` as the picture to start from.
_IMAGE_TO_IMAGE = frozenset({"image-to-image", "redux"})
# fal's named sizes (width, height); the default of FLUX endpoints is landscape_4_3.
_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
_EXTENSIONS = {"png": "png", "jpeg": "jpg"}
_FAILED = "Internal error while processing the request"
_PREEMPTED = "The runner processing the request went away (preempted)"
_CANCELLED = "Request was cancelled"

Side = Annotated[int, Field(ge=64, le=2048)]


class _ImageSize(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    width: Side
    height: Side


class FalInput(BaseModel):
    """The subset of a FLUX endpoint's input the market understands; other fields are ignored,
    as fal apps do."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    prompt: Annotated[str, Field(min_length=1, max_length=20_000)]
    image_size: (
        _ImageSize
        | Literal["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]
    ) = "landscape_4_3"
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    num_images: Annotated[int, Field(ge=1, le=1)] = 1
    output_format: Literal["jpeg", "png"] = "jpeg"
    image_url: Annotated[str, Field(min_length=1)] | None = None
    reference_image_url: Annotated[str, Field(min_length=1)] | None = None

    def to_image_input(self, *, references: tuple[bytes, ...] = ()) -> ImageInput:
        if isinstance(self.image_size, _ImageSize):
            width, height = self.image_size.width, self.image_size.height
        else:
            width, height = _PRESETS[self.image_size]
        return ImageInput(
            prompt=self.prompt,
            width=width,
            height=height,
            seed=self.seed,
            image_format=self.output_format,
            references=references,
        )

    def references(self, *, image_to_image: bool) -> tuple[bytes, ...]:
        """The subject photos this input carries; ``ValueError`` for a file input fal could not read."""
        urls = [self.reference_image_url] + ([self.image_url] if image_to_image else [])
        return tuple(data for url in urls if url is not None and (data := _file_input(url)) is not None)


def _file_input(url: str) -> bytes | None:
    """A data URI's bytes; ``None`` for an http(s) URL (never fetched here)."""
    if url.startswith(("http://", "https://")):
        return None
    match = _DATA_URI.match(url)
    if match is None:
        raise ValueError("expected an http(s) URL or a base64 data URI")
    try:
        return base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"data URI is not valid base64: {exc}") from exc


def create_fal_app(market: Market, *, executor: Executor | None = None) -> Starlette:
    """The ASGI app; ``executor`` runs image rendering (``None``: the event loop's default)."""
    api = _FalApi(market, executor)
    routes = [
        Route("/files/{provider}/{name}", api.file, methods=["GET"]),
        Route("/_market/billing", api.billing, methods=["GET"]),
        Route("/_market/stats", api.stats, methods=["GET"]),
        Route("/{provider}/v1/models/pricing", api.pricing, methods=["GET"]),
        # Before the request routes: ``v1/models/requests/by-endpoint`` would match them too.
        Route("/{provider}/v1/models/requests/by-endpoint", api.list_requests, methods=["GET"]),
        Route("/{provider}/{app:path}/requests/{request_id}/status", api.status, methods=["GET"]),
        Route("/{provider}/{app:path}/requests/{request_id}/cancel", api.cancel, methods=["PUT"]),
        Route("/{provider}/{app:path}/requests/{request_id}", api.result, methods=["GET"]),
        Route("/{provider}/{model:path}", api.submit, methods=["POST"]),
    ]
    return Starlette(routes=routes, max_body_size=_MAX_BODY_BYTES)


def _error(status_code: int, detail: object, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers or None)


def _failure(status_code: int, detail: str, error_type: str) -> JSONResponse:
    # fal puts the error type both in the body and in a header; fal-client reads either.
    body = {"detail": detail, "error_type": error_type}
    return JSONResponse(body, status_code=status_code, headers={"x-fal-error-type": error_type})


def _rejection(rejection: Rejection) -> JSONResponse:
    headers = {}
    if rejection.retry_after_s is not None:
        # RFC 9110 wants whole seconds; round up so a client that obeys it is never early.
        headers["Retry-After"] = str(max(1, int(-(-rejection.retry_after_s // 1))))
    return _error(rejection.status_code, rejection.detail, **headers)


class _FalApi:
    def __init__(self, market: Market, executor: Executor | None) -> None:
        self._market = market
        self._executor = executor
        # What each request was submitted as (endpoint path, JSON body), for the listing's
        # ``endpoint_id`` and ``json_input``: the market's job keeps only the parsed input.
        self._submitted: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._submitted_lock = threading.Lock()

    # -- shared checks ----------------------------------------------------------------------
    def _gate(self, request: Request) -> str | Response:
        """The provider name, or the error every provider route answers first."""
        provider = str(request.path_params["provider"])
        profile = self._market.profile(provider)
        if profile is None or profile.protocol != "fal":
            return _error(404, "Not Found")
        if not _AUTH.match(request.headers.get("authorization", "")):
            return _error(401, "Missing or invalid credentials: send 'Authorization: Key <key>'")
        outage = self._market.outage(provider)
        return _rejection(outage) if outage else provider

    def _job(self, request: Request) -> Job | Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        job = self._market.job(gate, str(request.path_params["request_id"]))
        return job if job is not None else _error(404, "Request not found")

    @staticmethod
    def _urls(request: Request, job: Job) -> dict[str, str]:
        # Like fal, status/result/cancel URLs use owner/alias only, never the submit subpath.
        app_id = "/".join(job.model.split("/")[:2])
        base = f"{str(request.base_url).rstrip('/')}/{job.provider}/{app_id}/requests/{job.id}"
        return {
            "request_id": job.id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    # -- queue protocol ---------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        path = str(request.path_params["model"])
        model = self._resolve_model(gate, path)
        if model is None:
            return _error(404, f"Application '{path}' not found")
        raw = await request.body()
        try:
            payload = FalInput.model_validate_json(raw)
        except ValidationError as exc:
            return _error(422, exc.errors(include_url=False, include_context=False, include_input=False))
        image_to_image = path[len(model) :].strip("/") in _IMAGE_TO_IMAGE
        if image_to_image and payload.image_url is None:
            return _error(422, [{"loc": ["body", "image_url"], "msg": "field required", "type": "missing"}])
        try:
            references = payload.references(image_to_image=image_to_image)
        except ValueError as exc:
            return _error(422, [{"loc": ["body", "image_url"], "msg": str(exc), "type": "value_error"}])
        outcome = self._market.submit(gate, model, payload.to_image_input(references=references))
        if isinstance(outcome, Rejection):
            return await _shared.reset_connection(request) if outcome.reset else _rejection(outcome)
        with self._submitted_lock:
            self._submitted[(gate, outcome.id)] = (path.strip("/"), json.loads(raw))
        if outcome.reset:  # taken and queued, but the answer with its request id never leaves
            return await _shared.reset_connection(request)
        body = {
            **self._urls(request, outcome),
            "status": "IN_QUEUE",
            "queue_position": self._market.queue_position(outcome),
        }
        return JSONResponse(body, headers={"x-fal-request-id": outcome.id})

    def _resolve_model(self, provider: str, path: str) -> str | None:
        profile = self._market.profile(provider)
        models = profile.models if profile else ()
        matches = [m for m in models if path == m or path.startswith(m + "/")]
        # The longest id wins: "fal-ai/flux/dev" over "fal-ai/flux" if a provider offers both.
        return max(matches, key=len) if matches else None

    async def status(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        with_logs = request.query_params.get("logs", "0").lower() in {"1", "true"}
        phase = self._market.phase(job)
        body: dict[str, Any] = {**self._urls(request, job), "logs": None, "metrics": {}}
        if phase is Phase.QUEUED:
            body.update(status="IN_QUEUE", queue_position=self._market.queue_position(job))
            return JSONResponse(body, status_code=202)
        if phase is Phase.RUNNING:
            body.update(status="IN_PROGRESS", logs=_logs("Generating image") if with_logs else None)
            return JSONResponse(body, status_code=202)
        body.update(status="COMPLETED", logs=_logs("Done") if with_logs else None)
        body["metrics"] = {"inference_time": job.processing_s * self._market.time_factor}
        if phase is Phase.FAILED:
            body.update(error=_PREEMPTED if job.preempted else _FAILED, error_type="runner_server_error")
        elif phase is Phase.CANCELLED:
            body.update(error=_CANCELLED, error_type="request_cancelled")
        return JSONResponse(body)

    async def result(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        phase = self._market.phase(job)
        if phase in (Phase.QUEUED, Phase.RUNNING):
            return _error(400, "Request is still in progress")
        if phase is Phase.FAILED:
            return _failure(500, _PREEMPTED if job.preempted else _FAILED, "runner_server_error")
        if phase is Phase.CANCELLED:
            return _failure(400, _CANCELLED, "request_cancelled")
        return JSONResponse(self._output(request, job), headers={"x-fal-request-id": job.id})

    def _output(self, request: Request, job: Job) -> dict[str, object]:
        """A done request's result body."""
        fmt = job.truth.image_format
        root = str(request.base_url).rstrip("/")
        image = {
            "url": f"{root}/files/{job.provider}/{job.id}.{_EXTENSIONS[fmt]}",
            "width": job.input.width,
            "height": job.input.height,
            "content_type": _CONTENT_TYPES[fmt],
        }
        return {
            "images": [image],
            "timings": {"inference": job.processing_s * self._market.time_factor},
            "seed": job.input.seed,
            "has_nsfw_concepts": [False],
            "prompt": job.input.prompt,
        }

    async def cancel(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        if self._market.cancel(job):
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)

    # -- platform API and files -------------------------------------------------------------
    async def pricing(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        wanted = [part for value in request.query_params.getlist("endpoint_id") for part in value.split(",")]
        if not wanted:
            return _error(422, "endpoint_id is required")
        profile = self._market.profile(gate)
        price = self._market.unit_price(gate)
        prices = [
            {"endpoint_id": model, "unit_price": price, "unit": "megapixels", "currency": "USD"}
            for model in wanted
            if profile is not None and model in profile.models
        ]
        return JSONResponse({"prices": prices, "has_more": False, "next_cursor": None})

    async def list_requests(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        params = dict(request.query_params)
        if "endpoint_id" in params:  # repeated, or comma-separated: the same list
            params["endpoint_id"] = ",".join(request.query_params.getlist("endpoint_id"))
        query = parse_query(params)
        if isinstance(query, list):
            return _error(422, query)
        # One clock reading for the whole answer: every timestamp is on the same wall clock.
        reading = (self._market.now_s(), datetime.now(UTC))
        listed = [
            item
            for job in self._market.jobs(gate)
            if (item := self._listed(request, job, reading, payloads=query.expand is not None))
        ]
        items, next_cursor = page_of(listed, query, now=reading[1])
        body = {
            "items": [item.body(payloads=query.expand is not None) for item in items],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }
        return JSONResponse(body)

    def _listed(
        self, request: Request, job: Job, reading: tuple[float, datetime], *, payloads: bool
    ) -> ListedRequest | None:
        """``job`` as the listing shows it, its times counted from ``reading`` (scenario seconds,
        wall moment); ``None`` while it has not ended (queued or running)."""
        market = self._market
        now_s = reading[0]
        phase = market.phase(job, now_s)
        if phase in (Phase.QUEUED, Phase.RUNNING):
            return None
        cancelled = market.cancelled_at(job, now_s) if phase is Phase.CANCELLED else None
        ended_s = cancelled if cancelled is not None else job.done_s
        started = job.started_s < ended_s  # a request cancelled while queued never started

        with self._submitted_lock:
            endpoint, body = self._submitted.get((job.provider, job.id), (job.model, {}))
        output: dict[str, object] | None = None
        if phase is Phase.DONE:
            status_code, output = 200, self._output(request, job) if payloads else None
        elif phase is Phase.FAILED:
            detail = _PREEMPTED if job.preempted else _FAILED
            status_code, output = 500, {"detail": detail, "error_type": "runner_server_error"}
        else:
            status_code, output = 400, {"detail": _CANCELLED, "error_type": "request_cancelled"}
        return ListedRequest(
            request_id=job.id,
            endpoint_id=endpoint,
            sent_at=_shared.wall_datetime(market, job.submitted_s, reading=reading),
            started_at=_shared.wall_datetime(market, job.started_s, reading=reading) if started else None,
            ended_at=_shared.wall_datetime(market, ended_s, reading=reading),
            status_code=status_code,
            duration_s=max(0.0, ended_s - job.started_s) * market.time_factor if started else 0.0,
            json_input=body,
            json_output=output,
        )

    async def file(self, request: Request) -> Response:
        provider = str(request.path_params["provider"])
        job_id, _, _ext = str(request.path_params["name"]).partition(".")
        job = self._market.job(provider, job_id) if self._market.profile(provider) else None
        if job is None or self._market.phase(job) is not Phase.DONE:
            return _error(404, "Not Found")
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self._executor, self._market.image_bytes, job)
        return Response(data, media_type=_CONTENT_TYPES[job.truth.image_format])

    # -- admin (never exposes truth: that stays a Python-side channel) ------------------------
    async def billing(self, request: Request) -> Response:
        return JSONResponse([dataclasses.asdict(record) for record in self._market.billing()])

    async def stats(self, request: Request) -> Response:
        stats = self._market.stats()
        return JSONResponse({name: dataclasses.asdict(value) for name, value in stats.items()})


def _logs(message: str) -> list[dict[str, str]]:
    stamp = datetime.now(UTC).isoformat()
    return [{"message": message, "level": "INFO", "source": "user", "timestamp": stamp}]
