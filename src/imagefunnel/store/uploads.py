"""Images tenants upload for their jobs to name: rows scoped by tenant, bytes in the blob store.

An upload of another tenant is simply not found, as a job of another tenant is. The same tenant
uploading the same bytes twice gets the first upload back (the blob is stored once anyway), and
that costs nothing of its quota: :class:`UploadQuota` counts uploads and their bytes per tenant,
checked in the transaction that would add a new one. (Two uploads racing at the very edge of the
quota can both get in: the quota bounds storage, it is not an exact ledger.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import stamina
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from imagefunnel.errors import ImageFunnelError, StoreError
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import UploadRow

__all__ = ["NewUpload", "Upload", "UploadQuota", "UploadQuotaExceeded", "UploadUsage", "Uploads"]


@dataclass(frozen=True, slots=True)
class UploadQuota:
    """The most uploads, and bytes of them, one tenant may keep."""

    count: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class UploadUsage:
    count: int
    total_bytes: int


class UploadQuotaExceeded(ImageFunnelError):
    """A new upload would take the tenant past its upload quota; ``limit`` names the setting."""

    def __init__(self, message: str, *, limit: str, value: int, used: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.used = used


@dataclass(frozen=True, slots=True)
class NewUpload:
    blob_sha256: str
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    tenant_id: str
    blob_sha256: str
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    created_at: datetime


def _upload(row: UploadRow) -> Upload:
    return Upload(
        id=row.id,
        tenant_id=row.tenant_id,
        blob_sha256=row.blob_sha256,
        filename=row.filename,
        format=row.format,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
    )


class Uploads:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, tenant_id: str, new: NewUpload, *, quota: UploadQuota | None = None) -> tuple[Upload, bool]:
        """The tenant's upload of these bytes, and whether it was created now; UploadQuotaExceeded
        when a new one would not fit in ``quota`` (bytes uploaded before are always answered)."""
        found = self._by_blob(tenant_id, new.blob_sha256)
        if found is not None:
            return found, False
        try:
            return self._insert(tenant_id, new, quota), True
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        # A concurrent upload of the same bytes by the same tenant won the insert: answer with it.
        found = self._by_blob(tenant_id, new.blob_sha256)
        if found is None:
            raise StoreError("upload vanished while resolving a concurrent upload")
        return found, False

    # SQLite refuses a second writer whose snapshot is stale ("database is locked"): try again.
    @stamina.retry(on=lambda e: isinstance(getattr(e, "__cause__", None), OperationalError), attempts=5)
    def _insert(self, tenant_id: str, new: NewUpload, quota: UploadQuota | None) -> Upload:
        with self._store.session() as s:
            if quota is not None:
                _check_quota(_usage(s, tenant_id), new.size_bytes, quota)
            row = UploadRow(
                id=uuid.uuid4().hex,
                tenant_id=tenant_id,
                blob_sha256=new.blob_sha256,
                filename=new.filename,
                format=new.format,
                width=new.width,
                height=new.height,
                size_bytes=new.size_bytes,
            )
            s.add(row)
            s.flush()
            return _upload(row)

    def _by_blob(self, tenant_id: str, blob_sha256: str) -> Upload | None:
        with self._store.session() as s:
            row = s.scalar(
                select(UploadRow).where(
                    UploadRow.tenant_id == tenant_id, UploadRow.blob_sha256 == blob_sha256
                )
            )
            return _upload(row) if row is not None else None

    def get(self, tenant_id: str, upload_id: str) -> Upload | None:
        """The tenant's upload ``upload_id``; None for one that does not exist or is another's."""
        with self._store.session() as s:
            row = s.scalar(
                select(UploadRow).where(UploadRow.id == upload_id, UploadRow.tenant_id == tenant_id)
            )
            return _upload(row) if row is not None else None

    def usage(self, tenant_id: str) -> UploadUsage:
        """How many uploads the tenant keeps, and their bytes."""
        with self._store.session() as s:
            return _usage(s, tenant_id)

    def remove(self, tenant_id: str, upload_id: str) -> Upload | None:
        """Forget the tenant's upload (its row; the blob is the caller's to remove); None if absent."""
        with self._store.session() as s:
            row = s.scalar(
                select(UploadRow).where(UploadRow.id == upload_id, UploadRow.tenant_id == tenant_id)
            )
            if row is None:
                return None
            gone = _upload(row)
            s.execute(delete(UploadRow).where(UploadRow.id == upload_id))
            return gone

    def made_before(self, cutoff: datetime) -> list[Upload]:
        """Every tenant's uploads made before ``cutoff``, oldest first (for pruning)."""
        with self._store.session() as s:
            rows = s.scalars(
                select(UploadRow)
                .where(UploadRow.created_at < cutoff)
                .order_by(UploadRow.created_at, UploadRow.id)
            )
            return [_upload(r) for r in rows]

    def page(self, tenant_id: str, *, limit: int = 50, offset: int = 0) -> Sequence[Upload]:
        with self._store.session() as s:
            rows = s.scalars(
                select(UploadRow)
                .where(UploadRow.tenant_id == tenant_id)
                .order_by(UploadRow.created_at.desc(), UploadRow.id)
                .limit(limit)
                .offset(offset)
            )
            return [_upload(r) for r in rows]


def _usage(s: Session, tenant_id: str) -> UploadUsage:
    count, total = s.execute(
        select(func.count(UploadRow.id), func.coalesce(func.sum(UploadRow.size_bytes), 0)).where(
            UploadRow.tenant_id == tenant_id
        )
    ).one()
    return UploadUsage(int(count), int(total))


def _check_quota(used: UploadUsage, size_bytes: int, quota: UploadQuota) -> None:
    if used.count + 1 > quota.count:
        raise UploadQuotaExceeded(
            f"upload_quota_count: the tenant keeps {used.count} uploads, at most {quota.count}; "
            "delete some (DELETE /v1/uploads/{id})",
            limit="upload_quota_count",
            value=quota.count,
            used=used.count,
        )
    if used.total_bytes + size_bytes > quota.total_bytes:
        raise UploadQuotaExceeded(
            f"upload_quota_bytes: {used.total_bytes} bytes kept + {size_bytes} would pass the "
            f"{quota.total_bytes} allowed; delete some uploads (DELETE /v1/uploads/{{id}})",
            limit="upload_quota_bytes",
            value=quota.total_bytes,
            used=used.total_bytes,
        )
