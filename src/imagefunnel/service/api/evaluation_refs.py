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


def _owned_paths(
    runtime: ServiceRuntime, tenant: Tenant, names: Sequence[tuple[int, str]]
) -> tuple[Path, ...]:
    """The blobs of the tenant's uploads ``names`` ((position in the references, name))."""
    paths = []
    for index, name in names:
        field = f"references[{index}]"
        upload = runtime.uploads.get(tenant.id, parse_upload_ref(name, field))
        if upload is None:
            raise ApiError(404, "not_found", f"{field}: no upload {name.removeprefix('upload:')!r}")
        path = runtime.blobs.path(upload.blob_sha256)
        if not path.is_file():
            raise ApiError(422, "invalid_spec", f"{field}: upload {upload.id} is not available")
        paths.append(path)
    return tuple(paths)


def _check_names(
    runtime: ServiceRuntime, tenant: Tenant, spec: JobSpec | None, extra: Sequence[ReferenceInput]
) -> None:
    """422 for a malformed name, 413 for too many, 404 for an upload not the tenant's: all before
    any file sent is kept."""
    offset = len(spec.references) if spec is not None else 0
    named: list[tuple[int, str]] = []
    for index, item in enumerate(extra):
        if isinstance(item, str):
            parse_upload_ref(item, f"references[{offset + index}]")
            named.append((offset + index, item))
    total = offset + len(extra)
    limit = runtime.settings.max_references_per_evaluation
    if total > limit:
        raise ApiError(
            413, "too_many_references", f"{total} reference photos: at most {limit} per evaluation"
        )
    if spec is not None:
        check_owned(spec, tenant.id, runtime.uploads)  # the spec's own (and its source)
    _owned_paths(runtime, tenant, named)


def resolve_request(
    runtime: ServiceRuntime, tenant: Tenant, spec: JobSpec | None, extra: Sequence[ReferenceInput]
) -> Resolved:
    """The evaluation's references, checked for the request (see :func:`_check_names`; 429 past the
    upload quota). Files sent are kept as the tenant's uploads."""
    _check_names(runtime, tenant, spec, extra)
    names = [
        upload_ref(store_upload(runtime, tenant, item.name, item.data)[0].id)
        if isinstance(item, ReferenceFile)
        else item
        for item in extra
    ]
    if spec is None:
        paths = _owned_paths(runtime, tenant, list(enumerate(names)))
        return Resolved(None, paths, stored_json(None, names), tuple(names))
    named = with_references(spec, names) if names else spec
    scoring = resolve_uploads(named, tenant.id, runtime.uploads, runtime.blobs)
    return Resolved(scoring, (), stored_json(named, names), tuple(map(str, named.references)))
