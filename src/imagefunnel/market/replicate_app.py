"""Replicate's predictions API, emulated for every replicate-protocol provider of a ``Market``.

Provider ``P``'s base URL ``{server}/{P}`` stands for ``https://api.replicate.com``:

    POST {P}/v1/models/{owner}/{name}/predictions  create (official model): {input, webhook?, ...}
    POST {P}/v1/predictions                        create with {version: id | owner/name[:id], input}
    GET  {P}/v1/predictions[?cursor=]              list, newest first, 100 a page: {next, previous, results}
    GET  {P}/v1/predictions/{id}                   the prediction object
    POST {P}/v1/predictions/{id}/cancel            cancel while starting or processing
    GET  {P}/v1/models/{owner}/{name}              the model and its latest_version
    GET  {P}/files/{id}.{ext}                      output files (replicate.delivery's stand-in)

``Authorization: Bearer <token>``; ``Prefer: wait[=n]`` (1-60 s) holds a create open until the
prediction is done (outputs then come inline as ``data:`` URIs, as Replicate's sync mode does);
``Cancel-After: <duration>`` (``90s``, ``1m30s``) sets a deadline after which the prediction ends
``aborted`` if it never started (free) or ``canceled`` if it was running. Statuses: ``starting``
(queued), ``processing``, ``succeeded``, ``failed``, ``canceled``, ``aborted``. Errors are
problem+json bodies ``{title, detail, status}``. ``metrics.predict_time`` is in scenario seconds,
the same seconds the billing log charges hardware-priced models for.

The list's results are prediction objects with their ``input``, as Replicate lists them (its only
way to find a prediction whose create answer never came). Not emulated: webhooks (accepted, never
sent), ``urls.stream`` (listed, answers 404), deployments, trainings, the list's ``source`` filter,
``num_outputs`` > 1.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from concurrent.futures import Executor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagefunnel.market import _shared
from imagefunnel.market.engine import ImageInput, Job, Market, Phase, Rejection

__all__ = ["ReplicateInput", "create_replicate_app", "parse_duration", "version_id"]

_AUTH = re.compile(r"^Bearer \S+$")
_MAX_BODY_BYTES = 1_000_000
_MAX_WAIT_S = 60
_PREFER_WAIT = re.compile(r"^wait(?:=(\d+))?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_HEX_VERSION = re.compile(r"^[0-9a-f]{64}$")
_ASPECTS = {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"}
_FORMATS: dict[str, Literal["png", "jpeg", "webp"]] = {"png": "png", "jpg": "jpeg", "webp": "webp"}
_FAILED = "Prediction failed: internal error while running the model"
_PREEMPTED = "Prediction failed: the machine running it was preempted"
_LIST_PAGE = 100  # predictions per page of the list, as Replicate pages it
_HOLD_SLICE_S = 0.05  # how often a held create re-checks the prediction (a cancel may end it early)

Side = Annotated[int, Field(ge=64, le=2048)]


class ReplicateInput(BaseModel):
    """The FLUX-style input the market understands; unknown fields are ignored, as models do."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    prompt: Annotated[str, Field(min_length=1, max_length=20_000)]
    aspect_ratio: str = "1:1"
    width: Side | None = None
    height: Side | None = None
    megapixels: Literal["1", "0.25"] = "1"
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    num_outputs: Annotated[int, Field(ge=1, le=1)] = 1
    output_format: Literal["webp", "jpg", "png"] = "webp"

    def size(self) -> tuple[int, int] | None:
        """Explicit width and height, else the aspect ratio at the requested megapixels."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.aspect_ratio not in _ASPECTS:
            return None
        w, h = (int(part) for part in self.aspect_ratio.split(":"))
        pixels = float(self.megapixels) * 1024 * 1024
        # FLUX rounds each side to a multiple of 16.
        return round(math.sqrt(pixels * w / h) / 16) * 16, round(math.sqrt(pixels * h / w) / 16) * 16


class _Create(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    input: dict[str, Any]
    version: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None


def version_id(model: str) -> str:
    """The emulated model's one version: a stable 64-hex id, like Replicate's."""
    return hashlib.sha256(f"replicate-version:{model}".encode()).hexdigest()


def create_replicate_app(market: Market, *, executor: Executor | None = None) -> Starlette:
    """The ASGI app for every replicate-protocol provider; ``executor`` renders images."""
    api = _ReplicateApi(market, executor)
    routes = [
        Route("/{provider}/files/{name}", api.file, methods=["GET"]),
        Route("/{provider}/v1/models/{owner}/{name}/predictions", api.create_for_model, methods=["POST"]),
        Route("/{provider}/v1/models/{owner}/{name}", api.model, methods=["GET"]),
        Route("/{provider}/v1/predictions", api.create_for_version, methods=["POST"]),
        Route("/{provider}/v1/predictions", api.list_predictions, methods=["GET"]),
        Route("/{provider}/v1/predictions/{id}", api.get, methods=["GET"]),
        Route("/{provider}/v1/predictions/{id}/cancel", api.cancel, methods=["POST"]),
    ]
    return Starlette(routes=routes, max_body_size=_MAX_BODY_BYTES)


def _problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    body = {"title": title, "detail": detail, "status": status}
    return JSONResponse(
        body, status_code=status, headers=headers or None, media_type="application/problem+json"
    )


def _rejection(rejection: Rejection) -> JSONResponse:
    if rejection.status_code == 429:
        detail = "Request was throttled. Expected available in 1 second."
        return _problem(429, "Request was throttled.", detail, **_shared.retry_after(rejection))
    return _problem(rejection.status_code, "Service unavailable", rejection.detail)


def parse_duration(value: str) -> float | None:
    """Seconds of a ``Cancel-After`` value (``45s``, ``1m30s``, ``500ms``, or bare seconds)."""
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _prefer_wait(header: str | None) -> int | Literal[False] | None:
    """Seconds to hold a create open; ``None`` without ``Prefer: wait``; ``False`` if invalid."""
    for preference in (header or "").split(","):
        match = _PREFER_WAIT.match(preference.strip())
        if match:
            seconds = int(match.group(1) or _MAX_WAIT_S)
            return seconds if 1 <= seconds <= _MAX_WAIT_S else False
    return None


class _ReplicateApi:
    def __init__(self, market: Market, executor: Executor | None) -> None:
        self._market = market
        self._executor = executor

    # -- shared checks ----------------------------------------------------------------------
    def _gate(self, request: Request) -> str | Response:
        provider = str(request.path_params["provider"])
        profile = self._market.profile(provider)
        if profile is None or profile.protocol != "replicate":
            return _problem(404, "Not found", "The requested resource could not be found.")
        if not _AUTH.match(request.headers.get("authorization", "")):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        outage = self._market.outage(provider)
        return _rejection(outage) if outage else provider

    def _job(self, request: Request) -> Job | Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        job = self._market.job(gate, str(request.path_params["id"]))
        return job if job is not None else _problem(404, "Not found", "Prediction not found")

    def _model(self, provider: str, owner: str, name: str) -> str | None:
        profile = self._market.profile(provider)
        model = f"{owner}/{name}"
        return model if profile is not None and model in profile.models else None

    # -- predictions ------------------------------------------------------------------------
    async def create_for_model(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        params = request.path_params
        model = self._model(gate, str(params["owner"]), str(params["name"]))
        if model is None:
            return _problem(404, "Not found", f"Model {params['owner']}/{params['name']} not found")
        return await self._create(request, gate, model)

    async def create_for_version(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        return await self._create(request, gate, None)

    def _model_of_version(self, provider: str, version: str) -> str | None:
        profile = self._market.profile(provider)
        for model in profile.models if profile else ():
            wanted = version_id(model)
            if version in (wanted, model, f"{model}:{wanted}"):
                return model
        return None

    async def _create(self, request: Request, provider: str, model: str | None) -> Response:
        """Create a prediction of ``model`` (``None``: of the body's ``version``)."""
        wait = _prefer_wait(request.headers.get("prefer"))
        if wait is False:
            return _problem(400, "Invalid Prefer header", "Prefer: wait must be between 1 and 60 seconds")
        deadline: float | None = None
        if "cancel-after" in request.headers:
            seconds = parse_duration(request.headers["cancel-after"])
            if seconds is None or seconds <= 0:
                return _problem(400, "Invalid Cancel-After header", "Use a duration such as 30s or 1m")
            deadline = seconds / self._market.time_factor
        try:
            create = _Create.model_validate_json(await request.body())
            inp = ReplicateInput.model_validate(create.input)
        except ValidationError as exc:
            return _problem(422, "Input validation failed", _first_error(exc))
        model = model or self._model_of_version(provider, create.version or "")
        if model is None:
            detail = "The specified version does not exist (or perhaps you don't have permission to use it?)"
            return _problem(422, "Invalid version or not permitted", detail)
        size = inp.size()
        if size is None:
            return _problem(
                422, "Input validation failed", f"aspect_ratio: {inp.aspect_ratio!r} is not allowed"
            )
        image = ImageInput(inp.prompt, size[0], size[1], inp.seed, _FORMATS[inp.output_format])
        outcome = self._market.submit(provider, model, image, deadline_s=deadline)
        if isinstance(outcome, Rejection):
            return await _shared.reset_connection(request) if outcome.reset else _rejection(outcome)
        if outcome.reset:  # created, but the answer naming it never leaves
            return await _shared.reset_connection(request)
        if wait is not None:
            await self._hold_until_done(request, outcome, wait)
        return JSONResponse(
            await self._prediction(request, outcome, inline=wait is not None), status_code=201
        )

    async def _hold_until_done(self, request: Request, job: Job, wait_s: float) -> None:
        remaining = float(wait_s)
        while remaining > 0 and self._market.phase(job) in (Phase.QUEUED, Phase.RUNNING):
            slice_s = min(remaining, _HOLD_SLICE_S, _shared.wall_seconds(self._market, job.done_s) + 0.001)
            if not await _shared.hold(request, slice_s):
                return
            remaining -= slice_s

    async def get(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        return JSONResponse(await self._prediction(request, job, inline=False))

    async def list_predictions(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        raw = request.query_params.get("cursor", "0")
        # The cursor is opaque to clients (they follow ``next``): here, the offset into the list.
        if not raw.isdigit():
            return _problem(400, "Bad request", "Invalid cursor")
        start = int(raw)
        jobs = self._market.jobs(gate)
        page = jobs[start : start + _LIST_PAGE]
        base = f"{str(request.base_url).rstrip('/')}/{gate}/v1/predictions"
        more = start + _LIST_PAGE < len(jobs)
        body = {
            "next": f"{base}?cursor={start + _LIST_PAGE}" if more else None,
            "previous": f"{base}?cursor={max(0, start - _LIST_PAGE)}" if start > 0 else None,
            "results": [await self._prediction(request, job, inline=False) for job in page],
        }
        return JSONResponse(body)

    async def cancel(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        # Replicate cancels a running prediction too (hardware-priced models pay for the time used).
        self._market.cancel(job, running=True)
        return JSONResponse(await self._prediction(request, job, inline=False))

    async def model(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        owner, name = str(request.path_params["owner"]), str(request.path_params["name"])
        model = self._model(gate, owner, name)
        if model is None:
            return _problem(404, "Not found", f"Model {owner}/{name} not found")
        latest = {"id": version_id(model), "created_at": "2025-01-01T00:00:00Z", "cog_version": "0.14.0"}
        body = {
            "url": f"https://replicate.com/{model}",
            "owner": owner,
            "name": name,
            "description": "Emulated model",
            "visibility": "public",
            "run_count": 0,
            "latest_version": latest | {"openapi_schema": {}},
        }
        return JSONResponse(body)

    async def file(self, request: Request) -> Response:
        return await _shared.serve_file(self._market, self._executor, request)

    # -- the prediction object --------------------------------------------------------------
    async def _prediction(self, request: Request, job: Job, *, inline: bool) -> dict[str, Any]:
        market = self._market
        now = market.now_s()
        phase = market.phase(job, now)
        ended = market.cancelled_at(job, now) if phase is Phase.CANCELLED else job.done_s
        status = _status(job, phase, ended)
        terminal = phase not in (Phase.QUEUED, Phase.RUNNING)
        started = now >= job.started_s and (ended is None or ended > job.started_s)
        base = f"{str(request.base_url).rstrip('/')}/{job.provider}/v1/predictions/{job.id}"
        body: dict[str, Any] = {
            "id": job.id,
            "model": job.model,
            "version": version_id(job.model),
            "input": _echo(job.input),
            "logs": "",
            "output": None,
            "error": (_PREEMPTED if job.preempted else _FAILED) if phase is Phase.FAILED else None,
            "status": status,
            "source": "api",
            "data_removed": False,
            "created_at": _shared.wall_time(market, job.submitted_s),
            "started_at": _shared.wall_time(market, job.started_s) if started else None,
            "completed_at": _shared.wall_time(market, ended) if terminal and ended is not None else None,
            "urls": {"get": base, "cancel": f"{base}/cancel", "stream": f"{base}/stream"},
            "metrics": {},
        }
        if started:
            body["logs"] = "Generating image\n" + ("Done\n" if phase is Phase.DONE else "")
        if terminal and started and ended is not None:
            body["metrics"] = {"predict_time": ended - job.started_s, "total_time": ended - job.submitted_s}
        if phase is Phase.DONE:
            body["output"] = [await self._output(request, job, inline=inline)]
        return body

    async def _output(self, request: Request, job: Job, *, inline: bool) -> str:
        if not inline:
            return _shared.file_url(request, job)
        data = await _shared.image_bytes(self._market, self._executor, job)
        content_type = _shared.CONTENT_TYPES[job.truth.image_format]
        return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def _status(job: Job, phase: Phase, ended: float | None) -> str:
    if phase is Phase.CANCELLED:
        # A deadline that passed before the prediction started aborts it (never billed).
        by_deadline = job.deadline_s is not None and ended == job.deadline_s
        return "aborted" if by_deadline and ended is not None and ended <= job.started_s else "canceled"
    return {
        Phase.QUEUED: "starting",
        Phase.RUNNING: "processing",
        Phase.DONE: "succeeded",
        Phase.FAILED: "failed",
    }[phase]


def _echo(inp: ImageInput) -> dict[str, Any]:
    fmt = next(name for name, value in _FORMATS.items() if value == inp.image_format)
    return {
        "prompt": inp.prompt,
        "width": inp.width,
        "height": inp.height,
        "seed": inp.seed,
        "output_format": fmt,
    }


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "input"
    return f"{where}: {first['msg']}"
