"""Reading an evaluation request's reference photos, and checking them for the request.

Beside its ``images``, an evaluation may send ``reference`` photos: multipart ``reference`` parts
(a file, or the text ``upload:<id>``), or JSON ``"references": ["upload:<id>" | {"name", "data"}]``.
See :mod:`imagefunnel.service.evaluation_references` for how they add to the spec's own.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from pathlib import Path

from starlette.datastructures import FormData, UploadFile

from imagefunnel.service.api.uploads import file_name, store_upload
from imagefunnel.service.errors import ApiError
from imagefunnel.service.evaluation_references import ReferenceFile, Resolved, stored_json, with_references
from imagefunnel.service.references import check_owned, parse_upload_ref, resolve_uploads, upload_ref
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.spec import JobSpec
from imagefunnel.store.tenancy import Tenant

__all__ = ["ReferenceInput", "form_references", "json_references", "resolve_request"]

ReferenceInput = str | ReferenceFile  # an upload's name, or a photo sent with the request


async def form_references(form: FormData, *, max_image_bytes: int) -> list[ReferenceInput]:
    found: list[ReferenceInput] = []
    for part in form.getlist("reference"):
        if isinstance(part, UploadFile):
            # One byte over the limit is enough for the upload check to refuse it by size.
            found.append(
                ReferenceFile(file_name(part.filename, "reference"), await part.read(max_image_bytes + 1))
            )
        else:
            found.append(part.strip())
    return found


def json_references(data: object) -> list[ReferenceInput]:
    items = data.get("references", []) if isinstance(data, dict) else []
    if not isinstance(items, list):
        raise ApiError(422, "invalid_request", 'references: a list of "upload:<id>" or {name, data (base64)}')
    found: list[ReferenceInput] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            found.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise ApiError(422, "invalid_request", f'references.{index}: "upload:<id>" or {{name, data}}')
        try:
            raw = base64.b64decode(item["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "invalid_image", f"references.{index}.data: not valid base64") from None
        found.append(ReferenceFile(file_name(item.get("name"), "reference"), raw))
    return found


def _owned_paths(runtime: ServiceRuntime, tenant: Tenant, names: Sequence[str]) -> tuple[Path, ...]:
    paths = []
    for index, name in enumerate(names):
        field = f"references[{index}]"
        upload = runtime.uploads.get(tenant.id, parse_upload_ref(name, field))
        if upload is None:
            raise ApiError(404, "not_found", f"{field}: no upload {name.removeprefix('upload:')!r}")
        path = runtime.blobs.path(upload.blob_sha256)
        if not path.is_file():
            raise ApiError(422, "invalid_spec", f"{field}: upload {upload.id} is not available")
        paths.append(path)
    return tuple(paths)


def resolve_request(
    runtime: ServiceRuntime, tenant: Tenant, spec: JobSpec | None, extra: Sequence[ReferenceInput]
) -> Resolved:
    """The evaluation's references, checked for the request: 422 for a malformed name (before any
    file sent is kept), 404 for an upload that is not the tenant's, 429 past the upload quota.
    Files sent are kept as the tenant's uploads."""
    offset = len(spec.references) if spec is not None else 0
    for index, item in enumerate(extra):
        if isinstance(item, str):
            parse_upload_ref(item, f"references[{offset + index}]")
    total = offset + len(extra)
    if total > runtime.settings.max_references_per_evaluation:
        limit = runtime.settings.max_references_per_evaluation
        raise ApiError(
            413, "too_many_references", f"{total} reference photos: at most {limit} per evaluation"
        )
    names = [
        upload_ref(store_upload(runtime, tenant, item.name, item.data)[0].id)
        if isinstance(item, ReferenceFile)
        else item
        for item in extra
    ]
    if spec is None:
        return Resolved(None, _owned_paths(runtime, tenant, names), stored_json(None, names), tuple(names))
    named = with_references(spec, names) if names else spec
    check_owned(named, tenant.id, runtime.uploads)  # 404 for another tenant's, before any is read
    scoring = resolve_uploads(named, tenant.id, runtime.uploads, runtime.blobs)
    return Resolved(scoring, (), stored_json(named, names), tuple(map(str, named.references)))
