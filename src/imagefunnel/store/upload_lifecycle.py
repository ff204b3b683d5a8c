"""When an upload may go, and going: deleting one, and pruning those nothing has named for a while.

An upload is **in use** while a queued or running job or evaluation of its tenant names it
(``upload:<id>`` in its stored spec): deleting it then is refused, because that work would fail
for want of the photo. A finished job or evaluation keeps its record; its page no longer shows a
deleted reference photo.

**Retention:** an upload is *stale* after ``days`` when it was uploaded before the cutoff and no job
or evaluation created since the cutoff names it (and none in use does). ``imagefunnel uploads
prune`` removes stale uploads; nothing removes them on its own.

Blobs are content-addressed and shared (the same bytes may be another tenant's upload, an image
someone evaluated, or a generated candidate), so removing an upload removes its blob file only when
no other row names those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from imagefunnel.errors import ImageFunnelError
from imagefunnel.store.blobs import BlobStore
from imagefunnel.store.models import CandidateRow, JobRow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import EvaluationImageRow, EvaluationRow, ServiceJobRow, UploadRow
from imagefunnel.store.uploads import Upload, Uploads

__all__ = ["UploadInUse", "delete_upload", "prune_uploads", "stale_uploads", "using_upload"]

_OPEN = ("queued", "running")


class UploadInUse(ImageFunnelError):
    """A queued or running job or evaluation still names the upload."""


@dataclass(frozen=True, slots=True)
class _Named:
    what: str  # "job" | "evaluation"
    id: str


def _pattern(upload_id: str) -> str:
    # Upload ids are 32 hex digits: nothing in them is a LIKE wildcard.
    return f"%upload:{upload_id}%"


def _naming_job(s: Session, tenant_id: str, upload_id: str, *, since: datetime | None) -> str | None:
    when = (
        JobRow.status.in_(_OPEN)
        if since is None
        else or_(JobRow.status.in_(_OPEN), JobRow.created_at >= since)
    )
    return s.scalar(
        select(JobRow.id)
        .join(ServiceJobRow, ServiceJobRow.job_id == JobRow.id)
        .where(ServiceJobRow.tenant_id == tenant_id, JobRow.spec_json.like(_pattern(upload_id)), when)
        .limit(1)
    )


def _naming_evaluation(s: Session, tenant_id: str, upload_id: str, *, since: datetime | None) -> str | None:
    status = EvaluationRow.status.in_(_OPEN)
    when = status if since is None else or_(status, EvaluationRow.created_at >= since)
    return s.scalar(
        select(EvaluationRow.id)
        .where(
            EvaluationRow.tenant_id == tenant_id,
            EvaluationRow.spec_json.like(_pattern(upload_id)),
            when,
        )
        .limit(1)
    )


def _named_by(s: Session, tenant_id: str, upload_id: str, *, since: datetime | None = None) -> _Named | None:
    job = _naming_job(s, tenant_id, upload_id, since=since)
    if job is not None:
        return _Named("job", job)
    evaluation = _naming_evaluation(s, tenant_id, upload_id, since=since)
    return _Named("evaluation", evaluation) if evaluation is not None else None


def using_upload(store: Store, tenant_id: str, upload_id: str) -> str | None:
    """``"job <id>"`` or ``"evaluation <id>"``: queued or running work that names the upload."""
    with store.session() as s:
        named = _named_by(s, tenant_id, upload_id)
    return f"{named.what} {named.id}" if named is not None else None


def _blob_named(s: Session, sha256: str) -> bool:
    return bool(
        s.scalar(
            select(
                or_(
                    exists().where(UploadRow.blob_sha256 == sha256),
                    exists().where(EvaluationImageRow.blob_sha256 == sha256),
                    exists().where(CandidateRow.blob_sha256 == sha256),
                )
            )
        )
    )


def _drop_blob(store: Store, blobs: BlobStore, sha256: str) -> None:
    with store.session() as s:
        named = _blob_named(s, sha256)
    if not named:
        blobs.delete(sha256)


def delete_upload(store: Store, uploads: Uploads, blobs: BlobStore, tenant_id: str, upload_id: str) -> Upload:
    """Remove the tenant's upload (and its bytes, unless something else holds them); UploadInUse
    while queued or running work names it. The caller has checked that the upload exists."""
    using = using_upload(store, tenant_id, upload_id)
    if using is not None:
        raise UploadInUse(f"upload {upload_id} is named by {using}, which has not finished; try when it has")
    gone = uploads.remove(tenant_id, upload_id)
    if gone is None:
        raise UploadInUse(f"upload {upload_id} was removed meanwhile")
    _drop_blob(store, blobs, gone.blob_sha256)
    return gone


def stale_uploads(store: Store, uploads: Uploads, cutoff: datetime) -> list[Upload]:
    """Uploads (of every tenant) made before ``cutoff`` that no work since then names, nor any open work."""
    old = uploads.made_before(cutoff)
    with store.session() as s:
        return [u for u in old if _named_by(s, u.tenant_id, u.id, since=cutoff) is None]


def prune_uploads(store: Store, uploads: Uploads, blobs: BlobStore, cutoff: datetime) -> list[Upload]:
    """Remove :func:`stale_uploads`; the ones removed. One named by new work meanwhile is kept."""
    removed = []
    for upload in stale_uploads(store, uploads, cutoff):
        try:
            removed.append(delete_upload(store, uploads, blobs, upload.tenant_id, upload.id))
        except UploadInUse:
            continue
    return removed
