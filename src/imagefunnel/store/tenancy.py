"""Tenants and their API keys. A key is shown once, at creation; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from imagefunnel.errors import StoreError
from imagefunnel.store.models import utcnow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import ApiKeyRow, TenantRow

__all__ = ["KEY_PREFIX", "CreatedKey", "Tenancy", "Tenant", "hash_key"]

KEY_PREFIX = "ifk_"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    budget_usd: float | None
    rate_per_s: float | None
    burst: int | None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``secret`` is the only copy there will ever be."""

    key_id: str
    tenant: Tenant
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _tenant(row: TenantRow) -> Tenant:
    return Tenant(row.id, row.name, row.budget_usd, row.rate_per_s, row.burst)


class Tenancy:
    def __init__(self, store: Store) -> None:
        self._store = store

    def ensure_tenant(
        self,
        name: str,
        *,
        budget_usd: float | None = None,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> Tenant:
        """The tenant called ``name`` (created if new); given limits replace the stored ones."""
        with self._store.session() as s:
            row = s.scalar(select(TenantRow).where(TenantRow.name == name))
            if row is None:
                row = TenantRow(id=uuid.uuid4().hex, name=name)
                s.add(row)
            if budget_usd is not None:
                row.budget_usd = budget_usd
            if rate_per_s is not None:
                row.rate_per_s = rate_per_s
            if burst is not None:
                row.burst = burst
            s.flush()
            return _tenant(row)

    def create_key(self, tenant_name: str, *, name: str = "", **limits: float | int | None) -> CreatedKey:
        tenant = self.ensure_tenant(tenant_name, **limits)  # type: ignore[arg-type]
        key_id = uuid.uuid4().hex[:12]
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self._store.session() as s:
            s.add(
                ApiKeyRow(
                    id=key_id,
                    tenant_id=tenant.id,
                    key_hash=hash_key(secret),
                    prefix=secret[: len(KEY_PREFIX) + len(key_id)],
                    name=name,
                )
            )
        return CreatedKey(key_id, tenant, secret)

    def authenticate(self, secret: str) -> Tenant | None:
        """The tenant of a valid, unrevoked key; None for anything else."""
        with self._store.session() as s:
            found = s.execute(
                select(TenantRow)
                .join(ApiKeyRow, ApiKeyRow.tenant_id == TenantRow.id)
                .where(ApiKeyRow.key_hash == hash_key(secret), ApiKeyRow.revoked_at.is_(None))
            ).scalar_one_or_none()
            return _tenant(found) if found is not None else None

    def keys(self, tenant_id: str) -> list[ApiKeyRow]:
        with self._store.session() as s:
            return list(
                s.scalars(
                    select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id).order_by(ApiKeyRow.created_at)
                )
            )

    def revoke(self, tenant_id: str, key_id: str) -> bool:
        with self._store.session() as s:
            done = s.execute(
                update(ApiKeyRow)
                .where(
                    ApiKeyRow.id == key_id, ApiKeyRow.tenant_id == tenant_id, ApiKeyRow.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow())
            )
            return getattr(done, "rowcount", 0) == 1

    def tenant(self, tenant_id: str) -> Tenant:
        with self._store.session() as s:
            row = s.get(TenantRow, tenant_id)
            if row is None:
                raise StoreError(f"no tenant {tenant_id!r}")
            return _tenant(row)
