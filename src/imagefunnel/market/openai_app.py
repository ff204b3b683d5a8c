"""OpenAI's and Together's image-generation APIs, emulated for the providers of a ``Market``.

Both are one synchronous call: the request stays open for the whole generation (queue plus
processing), and a client that hangs up early has still bought the image, as with the real APIs.
Provider ``P``'s base URL ``{server}/{P}/v1`` stands for ``https://api.openai.com/v1`` or
``https://api.together.xyz/v1``:

    POST {P}/v1/images/generations   generate (the body depends on the provider's protocol)
    GET  {P}/v1/models               the models the provider serves (a cheap, authenticated probe)
    GET  {P}/files/{id}.{ext}        Together's ``response_format: url`` outputs

**openai** (gpt-image-1 style): ``model, prompt, size`` (1024x1024, 1536x1024, 1024x1536, auto),
``quality`` (low, medium, high, auto), ``n``, ``output_format`` (png, jpeg, webp), ``background``,
``output_compression``, ``moderation``; unknown fields are refused. The answer is always base64
with token ``usage`` (output tokens from OpenAI's size × quality table, input tokens from the
prompt); the billing log charges the same tokens. ``x-request-id`` carries the job id.

**together**: ``model, prompt, width, height, steps, n, seed, response_format`` (base64, b64_json,
url), ``output_format`` (jpeg, png); unknown fields are ignored. ``id`` is the job id.

Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` (Together copies it).
Not emulated: ``n`` > 1, streaming (``stream``, ``partial_images``), edits and variations.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagefunnel.market import _shared
from imagefunnel.market.engine import ImageInput, Job, Market, Phase, Rejection

__all__ = ["OpenAIImageRequest", "TogetherImageRequest", "create_openai_app", "prompt_tokens"]

_AUTH = re.compile(r"^Bearer \S+$")
_MAX_BODY_BYTES = 1_000_000
_SIZES = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024), "1024x1536": (1024, 1536)}
# What gpt-image-1 reports as output tokens per image (OpenAI's published table). The market keeps
# its own copy on purpose: it plays the provider, the adapters' price models only estimate it.
_OUTPUT_TOKENS = {
    ("square", "low"): 272,
    ("square", "medium"): 1056,
    ("square", "high"): 4160,
    ("oblong", "low"): 408,
    ("oblong", "medium"): 1584,
    ("oblong", "high"): 6240,
}
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PROTOCOLS = frozenset({"openai", "together"})

Side = Annotated[int, Field(ge=64, le=2048)]


class OpenAIImageRequest(BaseModel):
    """``POST /v1/images/generations`` for gpt-image models."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    prompt: Annotated[str, Field(min_length=1, max_length=32_000)]
    n: Annotated[int, Field(ge=1, le=1)] | None = 1
    size: Literal["1024x1024", "1536x1024", "1024x1536", "auto"] | None = "auto"
    quality: Literal["low", "medium", "high", "auto"] | None = "auto"
    output_format: Literal["png", "jpeg", "webp"] | None = "png"
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    moderation: Literal["low", "auto"] | None = None
    response_format: Literal["b64_json"] | None = None  # gpt-image models never answer with URLs
    user: str | None = None

    def to_image_input(self) -> ImageInput:
        width, height = _SIZES.get(self.size or "auto", (1024, 1024))  # "auto" picks square here
        quality = "medium" if self.quality in (None, "auto") else self.quality
        shape = "square" if width == height else "oblong"
        return ImageInput(
            prompt=self.prompt,
            width=width,
            height=height,
            image_format=self.output_format or "png",
            input_tokens=prompt_tokens(self.prompt),
            output_tokens=_OUTPUT_TOKENS[(shape, quality)],
        )


class TogetherImageRequest(BaseModel):
    """``POST /v1/images/generations`` on Together (FLUX and friends)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    model: str
    prompt: Annotated[str, Field(min_length=1, max_length=20_000)]
    width: Side = 1024
    height: Side = 1024
    steps: Annotated[int, Field(ge=1, le=50)] = 4
    n: Annotated[int, Field(ge=1, le=1)] = 1
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    response_format: Literal["base64", "b64_json", "url"] = "url"
    output_format: Literal["jpeg", "png"] = "jpeg"

    def to_image_input(self) -> ImageInput:
        return ImageInput(self.prompt, self.width, self.height, self.seed, self.output_format)


def prompt_tokens(prompt: str) -> int:
    """Text tokens the emulated OpenAI reports for a prompt (words and punctuation marks)."""
    return max(1, len(_TOKEN.findall(prompt)))


def create_openai_app(market: Market, *, executor: Executor | None = None) -> Starlette:
    """The ASGI app for every openai- and together-protocol provider; ``executor`` renders images."""
    api = _ImagesApi(market, executor)
    routes = [
        Route("/{provider}/files/{name}", api.file, methods=["GET"]),
        Route("/{provider}/v1/images/generations", api.generate, methods=["POST"]),
        Route("/{provider}/v1/models", api.models, methods=["GET"]),
    ]
    return Starlette(routes=routes, max_body_size=_MAX_BODY_BYTES)


def _error(
    status: int,
    message: str,
    *,
    kind: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _rejection(rejection: Rejection) -> JSONResponse:
    if rejection.status_code == 429:
        message = "Rate limit reached for images per minute. Please try again later."
        headers = _shared.retry_after(rejection)
        return _error(429, message, kind="requests", code="rate_limit_exceeded", headers=headers)
    return _error(rejection.status_code, rejection.detail, kind="server_error")


def _invalid(exc: ValidationError, *, forbid_unknown: bool) -> JSONResponse:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if forbid_unknown and first["type"] == "extra_forbidden":
        return _error(400, f"Unknown parameter: '{param}'.", kind="invalid_request_error", param=param)
    message = f"Invalid value for '{param}': {first['msg']}"
    code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    return _error(400, message, kind="invalid_request_error", param=param, code=code)


class _ImagesApi:
    def __init__(self, market: Market, executor: Executor | None) -> None:
        self._market = market
        self._executor = executor

    def _gate(self, request: Request) -> tuple[str, str] | Response:
        """(provider, protocol), or the error every provider route answers first."""
        provider = str(request.path_params["provider"])
        profile = self._market.profile(provider)
        if profile is None or profile.protocol not in _PROTOCOLS:
            return _error(404, "Not found", kind="invalid_request_error", code="not_found")
        if not _AUTH.match(request.headers.get("authorization", "")):
            message = "Incorrect API key provided. Send 'Authorization: Bearer <key>'."
            return _error(401, message, kind="invalid_request_error", code="invalid_api_key")
        outage = self._market.outage(provider)
        return _rejection(outage) if outage else (provider, profile.protocol)

    async def generate(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        provider, protocol = gate
        body = await request.body()
        try:
            parsed: OpenAIImageRequest | TogetherImageRequest = (
                OpenAIImageRequest.model_validate_json(body)
                if protocol == "openai"
                else TogetherImageRequest.model_validate_json(body)
            )
        except ValidationError as exc:
            return _invalid(exc, forbid_unknown=protocol == "openai")
        profile = self._market.profile(provider)
        if profile is None or parsed.model not in profile.models:
            supported = ", ".join(profile.models) if profile else ""
            message = f"Invalid value: '{parsed.model}'. Supported values are: {supported}."
            return _error(400, message, kind="invalid_request_error", param="model", code="invalid_value")
        outcome = self._market.submit(provider, parsed.model, parsed.to_image_input())
        if isinstance(outcome, Rejection):
            return await _shared.reset_connection(request) if outcome.reset else _rejection(outcome)
        if outcome.reset:  # taken: the image is made and billed, but the connection is gone
            return await _shared.reset_connection(request)
        # The whole generation happens inside this one request.
        if not await _shared.hold(request, _shared.wall_seconds(self._market, outcome.done_s) + 0.001):
            return Response(status_code=499)  # the client hung up; nobody reads this
        if self._market.phase(outcome) is not Phase.DONE:
            # A preempted worker is behind the API's own gateway, which stays up and answers 500.
            message = "The server had an error while processing your request. Sorry about that!"
            if outcome.preempted:
                message = "The worker processing your request went away (preempted). Sorry about that!"
            return _error(500, message, kind="server_error", headers={"x-request-id": outcome.id})
        if isinstance(parsed, OpenAIImageRequest):
            return await self._openai_answer(outcome, parsed)
        return await self._together_answer(request, outcome, parsed)

    async def _openai_answer(self, job: Job, parsed: OpenAIImageRequest) -> Response:
        data = await _shared.image_bytes(self._market, self._executor, job)
        inp = job.input
        usage = {
            "input_tokens": inp.input_tokens,
            "input_tokens_details": {"text_tokens": inp.input_tokens, "image_tokens": 0},
            "output_tokens": inp.output_tokens,
            "output_tokens_details": {"image_tokens": inp.output_tokens, "text_tokens": 0},
            "total_tokens": inp.input_tokens + inp.output_tokens,
        }
        quality = "medium" if parsed.quality in (None, "auto") else parsed.quality
        body = {
            "created": int(time.time()),
            "background": "opaque",
            "data": [{"b64_json": base64.b64encode(data).decode()}],
            "output_format": inp.image_format,
            "quality": quality,
            "size": f"{inp.width}x{inp.height}",
            "usage": usage,
        }
        return JSONResponse(body, headers={"x-request-id": job.id})

    async def _together_answer(self, request: Request, job: Job, parsed: TogetherImageRequest) -> Response:
        item: dict[str, Any] = {"index": 0, "timings": {"inference": job.processing_s}}
        if parsed.response_format == "url":
            item["url"] = _shared.file_url(request, job)
        else:
            data = await _shared.image_bytes(self._market, self._executor, job)
            item["b64_json"] = base64.b64encode(data).decode()
        body = {"id": job.id, "model": job.model, "object": "list", "data": [item]}
        return JSONResponse(body)

    async def models(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        provider, protocol = gate
        profile = self._market.profile(provider)
        created = math.floor(time.time())
        models = [
            {"id": model, "object": "model", "created": created, "owned_by": provider}
            for model in (profile.models if profile else ())
        ]
        # OpenAI wraps the list; Together answers a bare JSON array.
        return JSONResponse({"object": "list", "data": models} if protocol == "openai" else models)

    async def file(self, request: Request) -> Response:
        return await _shared.serve_file(self._market, self._executor, request)
