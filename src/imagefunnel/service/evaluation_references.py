"""Reference photos an evaluation scores against: identity and skin tone of the images you bring.

An evaluation names its references three ways, which add up in this order:

* the spec's own ``references: ["upload:<id>"]`` (and ``source: "upload:<id>"``), as a job's spec;
* ``reference`` values sent beside the images: an upload's name (``upload:<id>``);
* ``reference`` files sent beside the images: each is checked as any upload is and kept as the
  tenant's upload (counted in its quota, named ``upload:<id>`` thereafter, so the next evaluation can
  name it instead of sending it again).

Every upload named must be the tenant's own: another tenant's is answered 404, like one that does
not exist. The evaluation keeps the ``upload:`` names (in its stored spec, or, without a spec, in
``{"evaluation_references": [...]}``); whoever scores it, the request or a worker, resolves them to
the blobs holding the bytes, which the scorer reads as it reads a job's reference photos.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.errors import SpecError
from imagefunnel.service.references import UPLOAD_SCHEME, resolve_uploads
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore
from imagefunnel.store.uploads import Uploads

__all__ = [
    "ReferenceFile",
    "Resolved",
    "load_stored",
    "reference_names",
    "resolve_stored",
    "stored_json",
    "with_references",
]

_ONLY_REFERENCES = "evaluation_references"  # never a JobSpec field: a spec-less evaluation's references


@dataclass(frozen=True, slots=True)
class ReferenceFile:
    """A reference photo sent with the evaluation request."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the scorer is built from: the spec with its uploads as blob paths, or (no spec) the
    reference photos' blob paths; and what the evaluation row keeps (``upload:`` names)."""

    spec: JobSpec | None
    references: tuple[Path, ...]
    stored_json: str | None
    names: tuple[str, ...] = ()  # the reference photos as upload:<id>, as the answer shows them


def with_references(spec: JobSpec, names: Sequence[str]) -> JobSpec:
    """``spec`` with ``names`` (``upload:<id>``) after its own references."""
    return JobSpec.model_validate({**spec.model_dump(), "references": [*map(str, spec.references), *names]})


def stored_json(spec: JobSpec | None, names: Sequence[str]) -> str | None:
    """What the evaluation row keeps: the spec (naming its uploads), or a spec-less one's references."""
    if spec is not None:
        return spec.model_dump_json()
    return json.dumps({_ONLY_REFERENCES: list(names)}) if names else None


def load_stored(spec_json: str | None) -> tuple[JobSpec | None, list[str]]:
    """An evaluation's stored spec and, when it has none, the upload names of its references."""
    if not spec_json:
        return None, []
    data = json.loads(spec_json)
    if isinstance(data, dict) and set(data) == {_ONLY_REFERENCES}:
        return None, [str(name) for name in data[_ONLY_REFERENCES]]
    return JobSpec.model_validate(data), []


def reference_names(spec_json: str | None) -> list[str]:
    """The upload names of a stored evaluation's reference photos (what its answer shows)."""
    spec, names = load_stored(spec_json)
    return [str(r) for r in spec.references] if spec is not None else names


def resolve_stored(spec_json: str | None, tenant_id: str, uploads: Uploads, blobs: BlobStore) -> Resolved:
    """For a worker: the stored evaluation's scoring inputs; SpecError (the evaluation fails, saying
    which reference) for an upload that is gone or is not the tenant's."""
    spec, names = load_stored(spec_json)
    if spec is not None:
        return Resolved(
            resolve_uploads(spec, tenant_id, uploads, blobs), (), spec_json, tuple(map(str, spec.references))
        )
    paths = []
    for index, name in enumerate(names):
        upload = uploads.get(tenant_id, name.removeprefix(UPLOAD_SCHEME))
        path = blobs.path(upload.blob_sha256) if upload is not None else None
        if path is None or not path.is_file():
            raise SpecError(f"references[{index}]: {name} is not available", field=f"references[{index}]")
        paths.append(path)
    return Resolved(None, tuple(paths), spec_json, tuple(names))
