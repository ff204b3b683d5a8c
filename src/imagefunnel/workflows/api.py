"""``POST /v1/workflows/{name}/runs``: each deployed workflow as a typed HTTP endpoint.

``workflow_router(registry, pool)`` returns a FastAPI ``APIRouter`` for the service app to include.
Every workflow deployed when it is built gets its own route with a request model generated from its
typed inputs (ints and floats with their ranges, choices as enums, images as base64 strings), so the
OpenAPI document shows each workflow's schema; a workflow deployed later is still served by the
generic route, validated against its manifest at request time.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the generated models from the
# endpoints' annotations at run time.

import base64
import binascii
import inspect
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, create_model

from imagefunnel.errors import ProviderError, SpecError
from imagefunnel.workflows.manifest import ExposedInput, Manifest, bind_values
from imagefunnel.workflows.pool import ComfyBox, ComfyPool, WorkflowRun
from imagefunnel.workflows.registry import Deployed, WorkflowRegistry

__all__ = ["RunImage", "RunResponse", "create_router", "request_model", "workflow_router"]

_MAX_CHOICES_AS_ENUM = 256


class RunImage(BaseModel):
    filename: str
    content_type: str
    data_base64: str


class RunResponse(BaseModel):
    workflow: str
    version: int
    server: str
    prompt_id: str
    gpu_seconds: float
    cost_usd: float
    seconds: float
    images: list[RunImage]


def _field(spec: ExposedInput) -> tuple[Any, Any]:
    kind: Any
    limits: dict[str, Any] = {}
    if spec.type in ("int", "float"):
        kind = int if spec.type == "int" else float
        limits = {"ge": spec.min, "le": spec.max}
    elif spec.type == "bool":
        kind = bool
    elif spec.type == "choice" and len(spec.choices) <= _MAX_CHOICES_AS_ENUM:
        kind = Literal[tuple(spec.choices)]
    else:
        kind = str
    description = spec.description or f"{spec.input} of node {spec.node}"
    if spec.type == "image":
        description = "the image, base64-encoded (PNG, JPEG or WebP)"
    required = spec.default is None or spec.type == "image"
    default = ... if required else spec.default
    return (
        kind,
        Field(default, description=description, **{k: v for k, v in limits.items() if v is not None}),
    )


def request_model(manifest: Manifest) -> type[BaseModel]:
    """The request body of one workflow: ``{"inputs": {...its typed inputs...}}``."""
    title = "".join(part.capitalize() for part in manifest.name.replace("-", "_").split("_"))
    inputs = create_model(  # type: ignore[call-overload]
        f"{title}Inputs",
        __config__=ConfigDict(extra="forbid"),
        **{name: _field(spec) for name, spec in manifest.inputs.items()},
    )
    body: type[BaseModel] = create_model(f"{title}RunRequest", inputs=(inputs, ...))
    return body


def _response(run: WorkflowRun) -> RunResponse:
    return RunResponse(
        workflow=run.workflow,
        version=run.version,
        server=run.box,
        prompt_id=run.prompt_id,
        gpu_seconds=run.gpu_seconds,
        cost_usd=run.usd,
        seconds=run.seconds,
        images=[
            RunImage(
                filename=image.filename,
                content_type="image/png" if image.filename.endswith(".png") else "application/octet-stream",
                data_base64=base64.b64encode(image.data).decode(),
            )
            for image in run.images
        ],
    )


async def _run(pool: ComfyPool | None, deployed: Deployed, given: dict[str, Any]) -> RunResponse:
    manifest = deployed.manifest
    images: dict[str, bytes] = {}
    values = dict(given)
    for name, spec in manifest.inputs.items():
        if spec.type == "image" and isinstance(values.get(name), str):
            try:
                images[name] = base64.b64decode(values.pop(name), validate=True)
            except (ValueError, binascii.Error) as exc:
                raise HTTPException(422, f"{name}: not valid base64") from exc
    try:
        bound = bind_values(manifest, {**values, **dict.fromkeys(images, "uploaded")})
        if pool is None:
            raise HTTPException(503, f"no ComfyUI servers are configured ({_SERVERS_ENV})")
        run = await pool.run(deployed, bound, images)
    except SpecError as exc:
        raise HTTPException(422, str(exc)) from exc
    except ProviderError as exc:
        raise HTTPException(503, str(exc)) from exc
    return _response(run)


def _typed_endpoint(pool: ComfyPool | None, deployed: Deployed) -> Callable[..., Awaitable[RunResponse]]:
    model = request_model(deployed.manifest)

    async def endpoint(body: Any) -> RunResponse:
        return await _run(pool, deployed, body.inputs.model_dump(exclude_unset=False))

    # FastAPI reads the body model from the signature: give it the generated one.
    parameter = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)
    endpoint.__signature__ = inspect.Signature([parameter], return_annotation=RunResponse)  # type: ignore[attr-defined]
    return endpoint


class GenericRunRequest(BaseModel):
    inputs: dict[str, Any] = {}


def workflow_router(registry: WorkflowRegistry, pool: ComfyPool | None) -> APIRouter:
    """The router the service app includes (``app.include_router(workflow_router(...))``);
    without a pool, runs answer 503 (the listing still works)."""
    router = APIRouter(tags=["workflows"])
    for deployed in registry.deployed():
        router.add_api_route(
            f"/v1/workflows/{deployed.name}/runs",
            _typed_endpoint(pool, deployed),
            methods=["POST"],
            response_model=RunResponse,
            name=f"run_{deployed.name}",
            summary=f"Run workflow {deployed.name} (version {deployed.manifest.version})",
        )

    @router.post("/v1/workflows/{name}/runs", response_model=RunResponse, summary="Run any deployed workflow")
    async def run_any(name: str, body: GenericRunRequest) -> RunResponse:
        try:
            deployed = registry.get(name)
        except SpecError as exc:
            raise HTTPException(404, str(exc)) from exc
        return await _run(pool, deployed, body.inputs)

    @router.get("/v1/workflows", summary="Deployed workflows and their inputs")
    async def list_workflows() -> list[dict[str, Any]]:
        return [
            {
                "name": d.name,
                "version": d.manifest.version,
                "inputs": {k: v.model_dump() for k, v in d.manifest.inputs.items()},
            }
            for d in registry.deployed()
        ]

    return router


_REGISTRY_ENV = "IMAGEFUNNEL_WORKFLOWS"  # the folder `imagefunnel workflows add` writes to
_SERVERS_ENV = "IMAGEFUNNEL_COMFYUI_SERVERS"  # comma-separated ComfyUI base URLs
_PRICE_ENV = "IMAGEFUNNEL_COMFYUI_USD_PER_HOUR"


def create_router() -> APIRouter:
    """The service's hook: the router for the deployed workflows and ComfyUI servers named by the
    environment (``IMAGEFUNNEL_WORKFLOWS``, ``IMAGEFUNNEL_COMFYUI_SERVERS``,
    ``IMAGEFUNNEL_COMFYUI_USD_PER_HOUR``)."""
    registry = WorkflowRegistry(Path(os.environ.get(_REGISTRY_ENV, "imagefunnel-workflows")))
    urls = [url.strip() for url in os.environ.get(_SERVERS_ENV, "").split(",") if url.strip()]
    try:
        price = float(os.environ.get(_PRICE_ENV, "2.69"))
    except ValueError as exc:
        raise SpecError(f"{_PRICE_ENV} must be a number of USD per hour") from exc
    pool = ComfyPool([ComfyBox(f"box-{i + 1}", url, price) for i, url in enumerate(urls)]) if urls else None
    return workflow_router(registry, pool)
