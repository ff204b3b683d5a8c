"""Jobs as tenants see them: idempotent submission under a tenant budget cap, scoped reads, cancel
requests and the ordered event log that SSE streams and webhooks are made from.

A submit writes the job (``queued``, for a worker to claim), its owner and its idempotency key in one
transaction. Two submits racing with one key cannot both create a job: the key is a primary key, so
the loser's insert fails and it answers with the winner's job (or a conflict if its body differed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import stamina
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from imagefunnel.errors import ImageFunnelError, StoreError
from imagefunnel.store.models import JobRow, LedgerRow, utcnow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import (
    IdempotencyRow,
    JobCancellationRow,
    JobEventRow,
    ServiceJobRow,
    TenantRow,
)

__all__ = [
    "OPEN_STATUSES",
    "IdempotencyConflict",
    "JobEvent",
    "ServiceJobs",
    "Submitted",
    "TenantBudgetExceeded",
]

OPEN_STATUSES = ("queued", "running")


class IdempotencyConflict(ImageFunnelError):
    """An ``Idempotency-Key`` already used with a different request body."""


class TenantBudgetExceeded(ImageFunnelError):
    """The job's budget does not fit in what is left of the tenant's budget cap."""


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    created: bool  # False: an earlier submit with the same idempotency key made it


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    job_id: str
    type: str
    data: dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    job_id: str
    name: str
    spec_json: str
    deliver: int
    budget_usd: float


def _integrity(exc: StoreError) -> bool:
    return isinstance(exc.__cause__, IntegrityError)


class ServiceJobs:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- submit -----------------------------------------------------------------------------------
    def submit(
        self, tenant_id: str, job: NewJob, *, idempotency_key: str | None, request_sha256: str
    ) -> Submitted:
        try:
            return self._submit(tenant_id, job, idempotency_key, request_sha256)
        except StoreError as exc:
            if idempotency_key is None or not _integrity(exc):
                raise
        # A concurrent submit with the same key won the insert: answer with its job.
        with self._store.session() as s:
            found = self._replay(s, tenant_id, idempotency_key, request_sha256)
        if found is None:
            raise StoreError("idempotency key vanished while resolving a concurrent submit")
        return found

    # SQLite refuses a second writer whose snapshot is stale ("database is locked"): try again.
    @stamina.retry(on=lambda e: isinstance(getattr(e, "__cause__", None), OperationalError), attempts=5)
    def _submit(
        self, tenant_id: str, job: NewJob, idempotency_key: str | None, request_sha256: str
    ) -> Submitted:
        with self._store.session() as s:
            # Row lock on PostgreSQL: one tenant's submits are serialised, so two cannot both fit
            # into the last of the budget cap (SQLite serialises every writer anyway).
            tenant = s.scalar(select(TenantRow).where(TenantRow.id == tenant_id).with_for_update())
            if tenant is None:
                raise StoreError(f"no tenant {tenant_id!r}")
            if idempotency_key is not None:
                found = self._replay(s, tenant_id, idempotency_key, request_sha256)
                if found is not None:
                    return found
            if tenant.budget_usd is not None:
                committed = self._committed_usd(s, tenant_id)
                if committed + job.budget_usd > tenant.budget_usd + 1e-9:
                    raise TenantBudgetExceeded(
                        f"tenant budget cap ${tenant.budget_usd:.2f}: ${committed:.2f} is spent or held "
                        f"by open jobs, this job's budget_usd ${job.budget_usd:.2f} does not fit"
                    )
            # Queued for a worker (see store.queue.JobQueue.enqueue), in this same transaction.
            s.add(
                JobRow(
                    id=job.job_id,
                    name=job.name,
                    spec_json=job.spec_json,
                    deliver=job.deliver,
                    status="queued",
                )
            )
            s.flush()
            s.add(ServiceJobRow(job_id=job.job_id, tenant_id=tenant_id, budget_usd=job.budget_usd))
            if idempotency_key is not None:
                s.add(
                    IdempotencyRow(
                        tenant_id=tenant_id,
                        key=idempotency_key,
                        request_sha256=request_sha256,
                        resource="job",
                        resource_id=job.job_id,
                    )
                )
        return Submitted(job.job_id, created=True)

    @staticmethod
    def _replay(s: Session, tenant_id: str, key: str, request_sha256: str) -> Submitted | None:
        row = s.get(IdempotencyRow, (tenant_id, key))
        if row is None:
            return None
        if row.request_sha256 != request_sha256 or row.resource != "job":
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used with a different request body"
            )
        return Submitted(row.resource_id, created=False)

    @staticmethod
    def _committed_usd(s: Session, tenant_id: str) -> float:
        """Spent by the tenant's finished jobs plus the whole budget of each of its open jobs."""
        open_budgets = s.scalar(
            select(func.coalesce(func.sum(ServiceJobRow.budget_usd), 0.0))
            .join(JobRow, JobRow.id == ServiceJobRow.job_id)
            .where(ServiceJobRow.tenant_id == tenant_id, JobRow.status.in_(OPEN_STATUSES))
        )
        charged = func.coalesce(LedgerRow.charged_usd, LedgerRow.quoted_usd)
        spent = s.scalar(
            select(func.coalesce(func.sum(charged), 0.0))
            .join(ServiceJobRow, ServiceJobRow.job_id == LedgerRow.job_id)
            .join(JobRow, JobRow.id == LedgerRow.job_id)
            .where(ServiceJobRow.tenant_id == tenant_id, JobRow.status.not_in(OPEN_STATUSES))
        )
        return float(open_budgets or 0.0) + float(spent or 0.0)

    # -- reads, scoped by tenant ------------------------------------------------------------------
    def get(self, tenant_id: str, job_id: str) -> JobRow | None:
        with self._store.session() as s:
            return s.scalar(
                select(JobRow)
                .join(ServiceJobRow, ServiceJobRow.job_id == JobRow.id)
                .where(JobRow.id == job_id, ServiceJobRow.tenant_id == tenant_id)
            )

    def owner(self, job_id: str) -> str | None:
        with self._store.session() as s:
            row = s.get(ServiceJobRow, job_id)
            return row.tenant_id if row is not None else None

    def page(
        self, tenant_id: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[JobRow], int]:
        """A page of the tenant's jobs, newest first, and how many there are in all."""
        where = [ServiceJobRow.tenant_id == tenant_id]
        if status is not None:
            where.append(JobRow.status == status)
        base = select(JobRow).join(ServiceJobRow, ServiceJobRow.job_id == JobRow.id).where(*where)
        with self._store.session() as s:
            total = s.scalar(select(func.count()).select_from(base.subquery())) or 0
            rows = s.scalars(base.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset))
            return list(rows), int(total)

    def spent_by_job(self, job_ids: Sequence[str]) -> dict[str, float]:
        charged = func.coalesce(LedgerRow.charged_usd, LedgerRow.quoted_usd)
        with self._store.session() as s:
            rows = s.execute(
                select(LedgerRow.job_id, func.sum(charged))
                .where(LedgerRow.job_id.in_(job_ids))
                .group_by(LedgerRow.job_id)
            )
            return {job_id: float(total or 0.0) for job_id, total in rows}

    def status_counts(self) -> dict[str, int]:
        """Service jobs by status (for metrics)."""
        with self._store.session() as s:
            rows = s.execute(
                select(JobRow.status, func.count())
                .join(ServiceJobRow, ServiceJobRow.job_id == JobRow.id)
                .group_by(JobRow.status)
            )
            return {status: int(n) for status, n in rows}

    # -- cancel -----------------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> str:
        """Ask for the job to stop: a queued job ends at once, a running one at its next heartbeat.
        Returns the job's status after the request."""
        with self._store.session() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            if job is None:
                raise StoreError(f"no job {job_id!r}")
            if job.status not in OPEN_STATUSES:
                return job.status
            if s.get(JobCancellationRow, job_id) is None:
                s.add(JobCancellationRow(job_id=job_id))
            if job.status == "queued":
                job.status = "cancelled"
                job.stop_reason = "cancelled on request before it started"
                job.finished_at = utcnow()
            return job.status

    def cancel_requested(self, job_id: str) -> bool:
        with self._store.session() as s:
            return s.get(JobCancellationRow, job_id) is not None

    # -- events -----------------------------------------------------------------------------------
    def append_event(self, job_id: str, type_: str, data: dict[str, object]) -> int:
        with self._store.session() as s:
            row = JobEventRow(job_id=job_id, type=type_, data=json.dumps(data, separators=(",", ":")))
            s.add(row)
            s.flush()
            return row.id

    def events_after(self, job_id: str, after_id: int, *, limit: int = 500) -> list[JobEvent]:
        with self._store.session() as s:
            rows = s.scalars(
                select(JobEventRow)
                .where(JobEventRow.job_id == job_id, JobEventRow.id > after_id)
                .order_by(JobEventRow.id)
                .limit(limit)
            )
            return [JobEvent(r.id, r.job_id, r.type, json.loads(r.data)) for r in rows]

    def ledger(self, tenant_id: str, *, job_id: str | None = None) -> Sequence[LedgerRow]:
        where = [ServiceJobRow.tenant_id == tenant_id]
        if job_id is not None:
            where.append(LedgerRow.job_id == job_id)
        with self._store.session() as s:
            return list(
                s.scalars(
                    select(LedgerRow)
                    .join(ServiceJobRow, ServiceJobRow.job_id == LedgerRow.job_id)
                    .where(*where)
                    .order_by(LedgerRow.id)
                )
            )
