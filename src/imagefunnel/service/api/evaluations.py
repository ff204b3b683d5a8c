"""``/v1/evaluations``: score images you bring, and tell us where the scorer was wrong.

A request carries images as ``multipart/form-data`` (``images`` files, optional ``spec`` and
``use_case`` fields) or as JSON (``{"images": [{"name", "data": base64}], "spec"?, "use_case"?}``).
Reference photos (identity, skin tone) come as the spec's ``references: ["upload:<id>"]`` and/or
``reference`` parts beside the images (files, or ``upload:<id>``); see
:mod:`imagefunnel.service.evaluation_references`.
Up to ``sync_evaluation_images`` images are scored in the request (200 with every verdict); more are
queued (202, then poll, and an ``evaluation.completed`` webhook). Feedback (accept/reject per image)
is stored so that ``imagefunnel evaluations export`` can write it as a labelled set for
``imagefunnel calibrate``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring import default_registry
from imagefunnel.service.api.evaluation_refs import (
    ReferenceInput,
    form_references,
    json_references,
    resolve_request,
)
from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.errors import ApiError
from imagefunnel.service.evaluation_references import Resolved, reference_names
from imagefunnel.service.inputs import decode_upload, parse_json, parse_spec_body, spec_from_data
from imagefunnel.service.scoring import verdict_json
from imagefunnel.service.timing import SERVER_TIMING, Spans
from imagefunnel.spec import JobSpec, UseCase
from imagefunnel.store.evaluations import NewImage, ScoredImageResult
from imagefunnel.store.service_models import EvaluationRow
from imagefunnel.store.tenancy import Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "spec": {
                            "type": "string",
                            "description": "job spec (JSON or YAML) whose thresholds apply",
                        },
                        "use_case": {"type": "string", "enum": [u.value for u in UseCase]},
                        "reference": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "reference photos (files, or upload:<id>) for identity",
                        },
                    },
                    "required": ["images"],
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


class ImageResult(BaseModel):
    position: int
    name: str
    image: str
    passed: bool | None
    result: dict[str, object] | None


class EvaluationOut(BaseModel):
    id: str
    status: str
    use_case: str
    images: int
    passed: int
    error: str | None
    references: list[str] = Field(description="the reference photos judged against, as upload:<id>")
    results: list[ImageResult]


class FeedbackItem(BaseModel):
    image: int = Field(ge=0, description="the image's position in the evaluation")
    verdict: Literal["accept", "reject"]
    dimensions: list[str] = Field(default_factory=list, max_length=64, description="what a reject is about")
    note: str = Field(default="", max_length=2000)


class FeedbackIn(BaseModel):
    items: list[FeedbackItem] = Field(min_length=1, max_length=1000)


class FeedbackOut(BaseModel):
    recorded: int


def owned_evaluation(evaluation_id: str, tenant: TenantDep, runtime: RuntimeDep) -> EvaluationRow:
    row = runtime.evaluations.get(tenant.id, evaluation_id) if len(evaluation_id) <= 64 else None
    if row is None:
        raise ApiError(404, "not_found", f"no evaluation {evaluation_id!r}")
    return row


EvaluationDep = Annotated[EvaluationRow, Depends(owned_evaluation)]


def _evaluation_out(runtime: RuntimeDep, row: EvaluationRow) -> EvaluationOut:
    results = [
        ImageResult(
            position=i.position,
            name=i.filename,
            image=f"/v1/evaluations/{row.id}/images/{i.position}",
            passed=i.passed,
            result=json.loads(i.result) if i.result else None,
        )
        for i in runtime.evaluations.images(row.id)
    ]
    return EvaluationOut(
        id=row.id,
        status=row.status,
        use_case=row.use_case,
        images=row.images,
        passed=row.passed,
        error=row.error,
        references=reference_names(row.spec_json),
        results=results,
    )


def _use_case(value: object, spec: JobSpec | None) -> str:
    if value in (None, ""):
        return spec.use_case.value if spec is not None else UseCase.GENERIC.value
    if value not in {u.value for u in UseCase}:
        raise ApiError(
            422, "invalid_use_case", f"use_case must be one of {', '.join(u.value for u in UseCase)}"
        )
    return str(value)


def _file_name(name: object, position: int) -> str:
    text = str(name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (text or f"image-{position}")[:200]


@dataclass(frozen=True, slots=True)
class _Read:
    images: list[tuple[str, bytes]]
    spec: JobSpec | None
    use_case: str
    references: list[ReferenceInput]  # sent beside the images (the spec's own are in it)

    @property
    def names_images(self) -> bool:
        """Whether the evaluation has reference photos (or an input image) to resolve."""
        spec = self.spec
        return bool(self.references) or (spec is not None and bool(spec.references or spec.source))


async def _multipart(
    request: Request, runtime: RuntimeDep
) -> tuple[list[tuple[str, bytes]], JobSpec | None, object, list[ReferenceInput]]:
    s = runtime.settings
    refs = s.max_references_per_evaluation
    form = await request.form(
        max_files=s.max_images_per_evaluation + refs, max_fields=8 + refs, max_part_size=s.max_spec_bytes
    )
    uploads = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    images = []
    for position, upload in enumerate(uploads):
        data = await upload.read(s.max_image_bytes + 1)
        images.append((_file_name(upload.filename, position), data))
    spec_text = form.get("spec")
    spec = None
    if isinstance(spec_text, str) and spec_text.strip():
        media = "application/json" if spec_text.lstrip().startswith("{") else "application/yaml"
        spec = parse_spec_body(
            spec_text.encode(), media, max_bytes=s.max_spec_bytes, max_depth=s.max_json_depth, uploads=True
        )
    references = await form_references(form, max_image_bytes=s.max_image_bytes)
    return images, spec, form.get("use_case"), references


def _json_images(data: object) -> list[tuple[str, bytes]]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ApiError(422, "invalid_request", "images: a list of {name, data (base64)} is required")
    images = []
    for position, item in enumerate(data["images"]):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise ApiError(422, "invalid_request", f"images.{position}.data: base64 image bytes are required")
        try:
            raw = base64.b64decode(item["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "invalid_image", f"images.{position}.data: not valid base64") from None
        images.append((_file_name(item.get("name"), position), raw))
    return images


async def _read_request(request: Request, runtime: RuntimeDep) -> _Read:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        images, spec, use_case, references = await _multipart(request, runtime)
    elif media == "application/json":
        data = parse_json(await request.body(), max_depth=runtime.settings.max_json_depth)
        images = _json_images(data)
        spec_data = data.get("spec") if isinstance(data, dict) else None
        spec = spec_from_data(spec_data, uploads=True) if spec_data is not None else None
        use_case = data.get("use_case") if isinstance(data, dict) else None
        references = json_references(data)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data or application/json")
    if not images:
        raise ApiError(422, "no_images", "an evaluation needs at least one image")
    limit = runtime.settings.max_images_per_evaluation
    if len(images) > limit:
        raise ApiError(413, "too_many_images", f"{len(images)} images: at most {limit} per evaluation")
    return _Read(images, spec, _use_case(use_case, spec), references)


def _decode_all(runtime: RuntimeDep, images: list[tuple[str, bytes]], spans: Spans) -> list[DecodedImage]:
    s = runtime.settings
    with spans.span("decode"):
        return [
            decode_upload(n, d, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels) for n, d in images
        ]


def _store_images(
    runtime: RuntimeDep, images: list[tuple[str, bytes]], decoded: list[DecodedImage]
) -> list[NewImage]:
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
    return [
        NewImage(name, runtime.blobs.put(data), mime.get(image.format, "application/octet-stream"))
        for (name, data), image in zip(images, decoded, strict=True)
    ]


def _score_now(
    runtime: RuntimeDep,
    names: list[str],
    decoded: list[DecodedImage],
    inputs: Resolved,
    use_case: str,
    spans: Spans,
) -> list[ScoredImageResult]:
    scorer = runtime.scorers.get(use_case=use_case, spec=inputs.spec, references=inputs.references)
    results = []
    for position, (name, image) in enumerate(zip(names, decoded, strict=True)):
        with spans.span("score"):  # the scorer's own time, what calling the library costs
            verdict = scorer.score(image)
        results.append(ScoredImageResult(position, verdict.passed, verdict_json(name, verdict, scorer)))
    return results


@dataclass(frozen=True, slots=True)
class _Evaluated:
    id: str
    stored: list[NewImage]
    results: list[ScoredImageResult] | None  # None: queued for a worker
    references: tuple[str, ...]


def _inputs(runtime: RuntimeDep, tenant: Tenant, read: _Read, spans: Spans) -> Resolved:
    spec = read.spec
    if not read.names_images:  # nothing to look up: no store round trip
        return Resolved(spec, (), spec.model_dump_json() if spec is not None else None)
    with spans.span("refs"):
        return resolve_request(runtime, tenant, spec, read.references)


def _evaluate(runtime: RuntimeDep, tenant: Tenant, read: _Read, spans: Spans) -> _Evaluated:
    """Everything off the event loop, in one thread hop: decode each image once (refusing bombs
    before anything is stored), check the reference photos (keeping those sent as uploads), store
    the bytes, score the decoded pixels, then write the evaluation with its results in one
    transaction, committed before the client hears of it."""
    images, use_case = read.images, read.use_case
    decoded = _decode_all(runtime, images, spans)
    inputs = _inputs(runtime, tenant, read, spans)
    with spans.span("store"):
        stored = _store_images(runtime, images, decoded)
    results = None
    if len(images) <= runtime.settings.sync_evaluation_images:
        results = _score_now(runtime, [name for name, _ in images], decoded, inputs, use_case, spans)
    with spans.span("store"):
        evaluation_id = runtime.evaluations.create(
            tenant.id,
            use_case=use_case,
            spec_json=inputs.stored_json,
            images=stored,
            queued=results is None,
            results=results,
        )
    return _Evaluated(evaluation_id, stored, results, inputs.names)


def _created_out(evaluated: _Evaluated, use_case: str) -> EvaluationOut:
    """The new evaluation as GET would show it, from memory rather than read back from the store."""
    by_position = {r.position: r for r in evaluated.results or ()}
    results = [
        ImageResult(
            position=i,
            name=image.filename,
            image=f"/v1/evaluations/{evaluated.id}/images/{i}",
            passed=by_position[i].passed if i in by_position else None,
            result=by_position[i].result if i in by_position else None,
        )
        for i, image in enumerate(evaluated.stored)
    ]
    return EvaluationOut(
        id=evaluated.id,
        status="queued" if evaluated.results is None else "done",
        use_case=use_case,
        images=len(evaluated.stored),
        passed=sum(r.passed for r in evaluated.results or ()),
        error=None,
        references=list(evaluated.references),
        results=results,
    )


@router.post(
    "", response_model=EvaluationOut, openapi_extra=_UPLOAD_BODY, responses={202: {"model": EvaluationOut}}
)
async def create_evaluation(
    request: Request, response: Response, tenant: TenantDep, runtime: RuntimeDep
) -> EvaluationOut:
    """Score up to ``sync_evaluation_images`` images now (200), or queue more (202). The response's
    ``Server-Timing`` header says how long reading, decoding, scoring and storing took."""
    spans = Spans()
    with spans.span("read"):
        read = await _read_request(request, runtime)
    evaluated = await asyncio.to_thread(_evaluate, runtime, tenant, read, spans)
    response.headers["Location"] = f"/v1/evaluations/{evaluated.id}"
    if evaluated.results is None:
        response.status_code = 202
    out = _created_out(evaluated, read.use_case)
    response.headers[SERVER_TIMING] = spans.header()
    return out


@router.get("", response_model=list[EvaluationOut])
def list_evaluations(
    tenant: TenantDep, runtime: RuntimeDep, limit: int = 20, offset: int = 0
) -> list[EvaluationOut]:
    rows = runtime.evaluations.page(tenant.id, limit=max(1, min(limit, 100)), offset=max(0, offset))
    return [_evaluation_out(runtime, r) for r in rows]


@router.get("/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(evaluation: EvaluationDep, runtime: RuntimeDep) -> EvaluationOut:
    return _evaluation_out(runtime, evaluation)


@router.get("/{evaluation_id}/images/{position}", responses={200: {"content": {"image/png": {}}}})
def get_evaluation_image(evaluation: EvaluationDep, position: int, runtime: RuntimeDep) -> Response:
    image = next((i for i in runtime.evaluations.images(evaluation.id) if i.position == position), None)
    if image is None:
        raise ApiError(404, "not_found", f"evaluation {evaluation.id!r} has no image {position}")
    return Response(
        runtime.blobs.get(image.blob_sha256),
        media_type=image.content_type,
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.post("/{evaluation_id}/feedback", response_model=FeedbackOut)
def give_feedback(evaluation: EvaluationDep, body: FeedbackIn, runtime: RuntimeDep) -> FeedbackOut:
    """A person's accept or reject per image (the newest counts), for ``imagefunnel calibrate``."""
    for item in body.items:
        unknown = [d for d in item.dimensions if d not in default_registry]
        if unknown:
            raise ApiError(422, "unknown_dimension", f"items: unknown dimension {unknown[0]!r}")
        if item.image >= evaluation.images:
            raise ApiError(422, "unknown_image", f"items: the evaluation has no image {item.image}")
    for item in body.items:
        runtime.evaluations.add_feedback(
            evaluation.id,
            position=item.image,
            accepted=item.verdict == "accept",
            dimensions=item.dimensions,
            note=item.note,
        )
    return FeedbackOut(recorded=len(body.items))
