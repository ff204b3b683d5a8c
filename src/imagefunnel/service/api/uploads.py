"""``/v1/uploads``: images a tenant's jobs name as reference photos or input image (``upload:<id>``).

An upload is the image file as ``multipart/form-data`` (one ``file`` part) or as the raw body
(``Content-Type: image/png`` | ``image/jpeg`` | ``image/webp`` | ``image/gif``). It is checked
as every image the service takes is: its format sniffed from the bytes (not the declared type), its
byte size and pixel count limited before it is decoded, and decoded once to prove it is an image.
The bytes go to the content-addressed blob store; the answer carries the id and the ``ref`` a spec
writes. Uploads belong to their tenant: another tenant's id is answered as one that does not exist.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.errors import ApiError
from imagefunnel.service.inputs import decode_upload
from imagefunnel.service.references import upload_ref
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.store.tenancy import Tenant
from imagefunnel.store.upload_lifecycle import delete_upload
from imagefunnel.store.uploads import NewUpload, Upload, UploadQuota

__all__ = ["UploadOut", "file_name", "router", "store_upload"]

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_RAW_TYPES = frozenset({*_MIME.values(), "application/octet-stream"})
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{m: {"schema": {"type": "string", "format": "binary"}} for m in _MIME.values()},
        },
    }
}


class UploadOut(BaseModel):
    id: str
    ref: str  # what a spec writes to name it: upload:<id>
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    created_at: datetime


def _out(upload: Upload) -> UploadOut:
    return UploadOut(
        id=upload.id,
        ref=upload_ref(upload.id),
        filename=upload.filename,
        format=upload.format,
        width=upload.width,
        height=upload.height,
        size_bytes=upload.size_bytes,
        created_at=upload.created_at,
    )


def file_name(name: object, fallback: str = "upload") -> str:
    """A client's file name as a label: its last path part, at most 200 characters."""
    text = str(name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (text or fallback)[:200]


def store_upload(runtime: ServiceRuntime, tenant: Tenant, name: str, data: bytes) -> tuple[Upload, bool]:
    """Check one image as hostile input and keep it for ``tenant`` within its upload quota (429
    ``upload_quota_exceeded`` naming the limit); (upload, created now)."""
    s = runtime.settings
    decoded = decode_upload(name, data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
    height, width = decoded.rgb.shape[:2]
    sha = runtime.blobs.put(data)
    new = NewUpload(
        blob_sha256=sha,
        filename=name,
        format=decoded.format,
        width=width,
        height=height,
        size_bytes=len(data),
    )
    quota = UploadQuota(count=s.upload_quota_count, total_bytes=s.upload_quota_bytes)
    return runtime.uploads.add(tenant.id, new, quota=quota)


async def _read_image(request: Request, runtime: ServiceRuntime) -> tuple[str, bytes]:
    limit = runtime.settings.max_image_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=1, max_part_size=1024)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "no_image", "send the image as the multipart part 'file'")
        # One byte over the limit is enough for decode_upload to refuse it by size.
        return file_name(part.filename), await part.read(limit + 1)
    if media in _RAW_TYPES:
        return file_name(request.headers.get("x-filename")), await request.body()
    raise ApiError(415, "unsupported_media_type", "send the image as multipart/form-data or as image/* bytes")


@router.post("", status_code=201, response_model=UploadOut, openapi_extra=_BODY)
async def create_upload(
    request: Request, response: Response, tenant: TenantDep, runtime: RuntimeDep
) -> UploadOut:
    """Keep an image for jobs to name (``references: ["upload:<id>"]``, ``source: "upload:<id>"``).
    The same bytes uploaded again answer 200 with the first upload."""
    name, data = await _read_image(request, runtime)
    if not data:
        raise ApiError(422, "no_image", "the upload is empty")
    upload, created = await asyncio.to_thread(store_upload, runtime, tenant, name, data)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/uploads/{upload.id}"
    return _out(upload)


def owned_upload(upload_id: str, tenant: TenantDep, runtime: RuntimeDep) -> Upload:
    upload = runtime.uploads.get(tenant.id, upload_id) if len(upload_id) <= 64 else None
    if upload is None:
        raise ApiError(404, "not_found", f"no upload {upload_id!r}")
    return upload


UploadDep = Annotated[Upload, Depends(owned_upload)]


@router.get("", response_model=list[UploadOut])
def list_uploads(
    tenant: TenantDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[UploadOut]:
    return [_out(u) for u in runtime.uploads.page(tenant.id, limit=limit, offset=offset)]


@router.get("/{upload_id}", response_model=UploadOut)
def get_upload(upload: UploadDep) -> UploadOut:
    return _out(upload)


@router.get("/{upload_id}/image", responses={200: {"content": {"image/png": {}}}})
def get_upload_image(upload: UploadDep, runtime: RuntimeDep) -> Response:
    return Response(
        runtime.blobs.get(upload.blob_sha256),
        media_type=_MIME.get(upload.format, "application/octet-stream"),
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


@router.delete(
    "/{upload_id}", status_code=204, responses={409: {"description": "queued or running work names it"}}
)
def remove_upload(upload: UploadDep, tenant: TenantDep, runtime: RuntimeDep) -> Response:
    """Delete the upload and, unless other records hold the same bytes, the bytes. Refused (409
    ``upload_in_use``, naming the job or evaluation) while queued or running work names it; finished
    work keeps its record. It frees the upload's share of the tenant's quota."""
    delete_upload(runtime.store, runtime.uploads, runtime.blobs, tenant.id, upload.id)
    return Response(status_code=204)
