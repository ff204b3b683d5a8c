"""``/v1/jobs``: submit (idempotent), list, read, candidates, images, delivered.zip, cancel, events.

Submitting only queues the job; a worker claims it. A job of another tenant is answered exactly like
a job that does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from imagefunnel.errors import ImageDecodeError
from imagefunnel.imaging import sniff_format
from imagefunnel.service.api.schemas import (
    CandidatePage,
    DeliveryOut,
    JobOut,
    JobPage,
    LedgerOut,
    candidate_out,
    delivery_out,
    job_out,
    ledger_out,
)
from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.errors import ApiError
from imagefunnel.service.events import TERMINAL_EVENTS
from imagefunnel.service.inputs import parse_spec_body
from imagefunnel.service.references import check_owned
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.spec import JobSpec
from imagefunnel.store.models import JobRow
from imagefunnel.store.service_jobs import NewJob
from imagefunnel.store.tenancy import Tenant

__all__ = ["queue_job", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "description": "a job spec"}},
            "application/yaml": {"schema": {"type": "string", "description": "a job spec as YAML"}},
        },
    }
}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


def owned_job(job_id: str, tenant: TenantDep, runtime: RuntimeDep) -> JobRow:
    row = runtime.jobs.get(tenant.id, job_id) if len(job_id) <= 64 else None
    if row is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return row


JobDep = Annotated[JobRow, Depends(owned_job)]


def _job(runtime: RuntimeDep, row: JobRow) -> JobOut:
    return job_out(row, spent_usd=runtime.store.spent_usd(row.id), quote=runtime.quotes.get(row.id))


async def queue_job(
    runtime: ServiceRuntime, tenant: Tenant, spec: JobSpec, *, idempotency_key: str | None = None
) -> tuple[JobRow, bool]:
    """Queue ``spec`` for ``tenant`` (its uploads checked to be the tenant's own: 404 if not); the
    job, and whether it is new (False: an ``idempotency_key`` retry answered with the first job)."""
    await asyncio.to_thread(check_owned, spec, tenant.id, runtime.uploads)
    canonical = spec.model_dump_json()
    new = NewJob(
        job_id=uuid.uuid4().hex,
        name=spec.name,
        spec_json=canonical,
        deliver=spec.deliver,
        budget_usd=spec.budget_usd,
    )
    submitted = await asyncio.to_thread(
        runtime.jobs.submit,
        tenant.id,
        new,
        idempotency_key=idempotency_key,
        request_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
    )
    if submitted.created:
        runtime.wake_workers()
    row = runtime.jobs.get(tenant.id, submitted.job_id)
    assert row is not None  # just written, and owned by this tenant
    return row, submitted.created


@router.post("", status_code=201, response_model=JobOut, openapi_extra=_SPEC_BODY)
async def submit_job(
    request: Request,
    response: Response,
    tenant: TenantDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    """Queue a job (spec as JSON or YAML). A retry with the same ``Idempotency-Key`` and spec returns
    the same job (200); the same key with a different spec is a 409. The spec names its images
    (``references``, ``source``) as uploads, ``upload:<id>`` (see ``POST /v1/uploads``)."""
    settings = runtime.settings
    spec = parse_spec_body(
        await request.body(),
        request.headers.get("content-type", ""),
        max_bytes=settings.max_spec_bytes,
        max_depth=settings.max_json_depth,
        uploads=True,
    )
    row, created = await queue_job(runtime, tenant, spec, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{row.id}"
    return _job(runtime, row)


@router.get("", response_model=JobPage)
def list_jobs(
    tenant: TenantDep,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    rows, total = runtime.jobs.page(tenant.id, status=status, limit=limit, offset=offset)
    ids = [r.id for r in rows]
    spent = runtime.jobs.spent_by_job(ids)
    quotes = runtime.quotes.many(ids)
    items = [job_out(r, spent_usd=spent.get(r.id, 0.0), quote=quotes.get(r.id)) for r in rows]
    more = offset + len(rows) < total
    return JobPage(items=items, total=total, next_offset=offset + len(rows) if more else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job: JobDep, runtime: RuntimeDep) -> JobOut:
    """The job. ``quote``: the quote its worker made as it first claimed it, before buying anything,
    and once it ended ``quote.check``, quoted vs actual (null until a worker quoted it)."""
    return _job(runtime, job)


@router.get("/{job_id}/candidates", response_model=CandidatePage)
def list_candidates(
    job: JobDep,
    runtime: RuntimeDep,
    passed: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CandidatePage:
    rows = [r for r in runtime.store.candidates(job.id) if passed is None or r.passed == passed]
    page = rows[offset : offset + limit]
    scores = runtime.store.scores([r.id for r in page])
    more = offset + len(page) < len(rows)
    return CandidatePage(
        items=[candidate_out(r, scores[r.id]) for r in page],
        total=len(rows),
        next_offset=offset + len(page) if more else None,
    )


def _image(runtime: RuntimeDep, job_id: str, candidate_id: int) -> tuple[bytes, str]:
    row = next((r for r in runtime.store.candidates(job_id) if r.id == candidate_id), None)
    if row is None:
        raise ApiError(404, "not_found", f"job {job_id!r} has no candidate {candidate_id}")
    data = runtime.blobs.get(row.blob_sha256)
    try:
        fmt = sniff_format(data)  # the bytes say what they are, not the provider's header
    except ImageDecodeError:
        fmt = ""
    return data, fmt


@router.get("/{job_id}/images/{candidate_id}", responses={200: {"content": {"image/png": {}}}})
def get_image(job: JobDep, candidate_id: int, runtime: RuntimeDep) -> Response:
    data, fmt = _image(runtime, job.id, candidate_id)
    return Response(
        data,
        media_type=_MIME.get(fmt, "application/octet-stream"),
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


@router.get("/{job_id}/delivered.zip", responses={200: {"content": {"application/zip": {}}}})
def delivered_zip(job: JobDep, runtime: RuntimeDep) -> Response:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for rank, cid in enumerate(runtime.store.delivered_ids(job.id), start=1):
            data, fmt = _image(runtime, job.id, cid)
            archive.writestr(f"{rank:03d}-candidate-{cid}.{_EXT.get(fmt, 'bin')}", data)
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{job.id}-delivered.zip"'},
    )


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut)
async def cancel_job(job: JobDep, tenant: TenantDep, runtime: RuntimeDep) -> JobOut:
    """Stop the job: a queued job ends at once; a running one within a heartbeat, its in-flight
    provider requests cancelled where the protocol allows (the ledger shows what was charged)."""
    before = job.status
    status = await asyncio.to_thread(runtime.jobs.request_cancel, job.id)
    if before == "queued" and status == "cancelled":
        data: dict[str, object] = {
            "status": "cancelled",
            "stop_reason": "cancelled before it started",
            "delivered_ids": [],
        }
        await asyncio.to_thread(runtime.recorder.record, job.id, tenant.id, "cancelled", data)
    row = runtime.jobs.get(tenant.id, job.id)
    assert row is not None
    return _job(runtime, row)


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def job_events(
    job: JobDep,
    runtime: RuntimeDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: ``wave_started``, ``candidate_scored``, ``request_failed`` and one final
    ``delivered`` | ``partial`` | ``failed`` | ``cancelled``. Reconnect with ``Last-Event-ID``."""
    cursor = after or 0
    if last_event_id and last_event_id.strip().isdigit():
        cursor = int(last_event_id.strip())
    poll = runtime.settings.sse_poll_s
    yield ServerSentEvent(comment="imagefunnel job events", retry=2000)
    while True:
        events = await asyncio.to_thread(runtime.jobs.events_after, job.id, cursor)
        for event in events:
            cursor = event.id
            yield ServerSentEvent(id=str(event.id), event=event.type, data=event.data)
            if event.type in TERMINAL_EVENTS:
                return
        if not events:
            await runtime.hub.wait(job.id, within_s=poll)


@router.get("/{job_id}/ledger", response_model=list[LedgerOut])
def job_ledger(job: JobDep, tenant: TenantDep, runtime: RuntimeDep) -> list[LedgerOut]:
    return [ledger_out(r) for r in runtime.jobs.ledger(tenant.id, job_id=job.id)]


@router.get("/{job_id}/webhooks", response_model=list[DeliveryOut])
def job_webhooks(job: JobDep, tenant: TenantDep, runtime: RuntimeDep) -> list[DeliveryOut]:
    """The delivery log of this job's webhook messages: every attempt's outcome."""
    return [delivery_out(r) for r in runtime.webhooks.deliveries(tenant.id, job_id=job.id)]
