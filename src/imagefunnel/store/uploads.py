"""Images tenants upload for their jobs to name: rows scoped by tenant, bytes in the blob store.

An upload of another tenant is simply not found, as a job of another tenant is. The same tenant
uploading the same bytes twice gets the first upload back (the blob is stored once anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import stamina
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from imagefunnel.errors import StoreError
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import UploadRow

__all__ = ["NewUpload", "Upload", "Uploads"]


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

    def add(self, tenant_id: str, new: NewUpload) -> tuple[Upload, bool]:
        """The tenant's upload of these bytes, and whether it was created now."""
        found = self._by_blob(tenant_id, new.blob_sha256)
        if found is not None:
            return found, False
        try:
            return self._insert(tenant_id, new), True
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
    def _insert(self, tenant_id: str, new: NewUpload) -> Upload:
        with self._store.session() as s:
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
