"""Images a job spec names over the API: uploads only, never paths on the server's host.

A spec submitted over the API names an image by the id ``POST /v1/uploads`` answered, written
``upload:<id>`` wherever the spec takes an image path (``references``, ``source``)::

    references: ["upload:3f2a…"]
    source: "upload:9c1d…"

Any other path is refused when the spec is parsed (the service never reads a file on its own host
on a client's say-so). At submit, every upload named must be the tenant's own: another tenant's
upload is answered like one that does not exist (404). The stored spec keeps the ``upload:`` names;
the worker running the job resolves them to the uploaded bytes in the blob store
(:func:`resolve_uploads`), checking ownership again against the job's tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.errors import SpecError
from imagefunnel.service.errors import ApiError
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore
from imagefunnel.store.uploads import Upload, Uploads

__all__ = [
    "UPLOAD_SCHEME",
    "NamedUpload",
    "check_owned",
    "named_uploads",
    "parse_upload_ref",
    "resolve_uploads",
    "upload_ref",
]

UPLOAD_SCHEME = "upload:"
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class NamedUpload:
    field: str  # where the spec names it: "source", "references[0]"
    upload_id: str


def upload_ref(upload_id: str) -> str:
    """How a spec names an upload."""
    return f"{UPLOAD_SCHEME}{upload_id}"


def parse_upload_ref(text: str, field: str) -> str:
    """The upload id ``text`` (``upload:<id>``) names; 422 naming ``field`` for anything else."""
    if not text.startswith(UPLOAD_SCHEME):
        raise ApiError(
            422,
            "invalid_spec",
            f"{field}: paths on the server are not accepted over the API; upload the image "
            f"(POST /v1/uploads) and name it as {UPLOAD_SCHEME}<id>",
        )
    upload_id = text.removeprefix(UPLOAD_SCHEME)
    if _ID.fullmatch(upload_id) is None:
        raise ApiError(
            422, "invalid_spec", f"{field}: {text[:80]!r} is not an upload ({UPLOAD_SCHEME}<32 hex digits>)"
        )
    return upload_id


def _image_fields(spec: JobSpec) -> list[tuple[str, Path]]:
    fields = [("source", spec.source)] if spec.source is not None else []
    return fields + [(f"references[{i}]", path) for i, path in enumerate(spec.references)]


def named_uploads(spec: JobSpec, *, uploads_allowed: bool) -> list[NamedUpload]:
    """The uploads ``spec`` names; ApiError (422) for any image it names by a path instead (or for
    any image at all where ``uploads_allowed`` is False), or for a malformed upload id."""
    named = []
    for field, path in _image_fields(spec):
        if not uploads_allowed:
            raise ApiError(422, "invalid_spec", f"{field}: paths on the server are not accepted over the API")
        named.append(NamedUpload(field, parse_upload_ref(str(path), field)))
    return named


def check_owned(spec: JobSpec, tenant_id: str, uploads: Uploads) -> list[Upload]:
    """The tenant's uploads ``spec`` names; 404 for one it does not own (or that does not exist)."""
    found = []
    for name in named_uploads(spec, uploads_allowed=True):
        upload = uploads.get(tenant_id, name.upload_id)
        if upload is None:
            raise ApiError(404, "not_found", f"{name.field}: no upload {name.upload_id!r}")
        found.append(upload)
    return found


def resolve_uploads(spec: JobSpec, tenant_id: str | None, uploads: Uploads, blobs: BlobStore) -> JobSpec:
    """``spec`` with each ``upload:<id>`` replaced by the blob holding its bytes; SpecError (the job
    fails, saying why, without naming a server path) for an upload that is not the tenant's or
    whose bytes are gone. A spec naming no uploads comes back as it is."""
    if not spec.references and spec.source is None:
        return spec
    if tenant_id is None:
        raise SpecError("the job names uploads but has no tenant to own them", field="references")
    resolved: dict[str, Path] = {}
    for name in named_uploads(spec, uploads_allowed=True):
        upload = uploads.get(tenant_id, name.upload_id)
        path = blobs.path(upload.blob_sha256) if upload is not None else None
        if path is None or not path.is_file():
            raise SpecError(f"{name.field}: upload {name.upload_id} is not available", field=name.field)
        resolved[name.field] = path
    update: dict[str, object] = {
        "references": [resolved[f"references[{i}]"] for i in range(len(spec.references))]
    }
    if spec.source is not None:
        update["source"] = resolved["source"]
    return JobSpec.model_validate({**spec.model_dump(), **update})
