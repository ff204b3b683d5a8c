"""The job queue: jobs wait as ``queued`` rows until a worker claims one under a lease.

Several worker processes may share one database. A claim is a compare-and-set on the job row, so two
workers can never hold the same job; on PostgreSQL the candidate row is also selected with
``FOR UPDATE SKIP LOCKED``, so concurrent workers pick different jobs instead of queueing on one row
lock. A worker renews its lease while it runs the job (:meth:`JobQueue.renew`); a worker that dies
stops renewing, and once the lease expires another worker claims the job again and resumes it from
the store (nothing bought is bought twice: see ``Funnel.resume``). A worker whose renewal fails has
lost the job and must stop working on it.

Lease times are the workers' UTC clocks: keep worker hosts NTP-synchronised and leases much longer
than the clock skew between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from imagefunnel.store.models import JobRow, utcnow
from imagefunnel.store.repository import Store

__all__ = ["Claim", "JobQueue"]

QUEUED, RUNNING = "queued", "running"


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker now holds. ``resumed``: it was started before (by a worker that lost it)."""

    job_id: str
    spec_json: str
    worker_id: str
    lease_expires_at: datetime
    resumed: bool


class JobQueue:
    """Claims on the jobs of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def enqueue(self, *, job_id: str, name: str, spec_json: str, deliver: int) -> None:
        """Add a job for a worker to run."""
        with self._store.session() as s:
            s.add(JobRow(id=job_id, name=name, spec_json=spec_json, deliver=deliver, status=QUEUED))

    def claim(self, worker_id: str, *, lease_s: float, now: datetime | None = None) -> Claim | None:
        """Take the oldest claimable job (queued, or running under an expired lease), or None."""
        now = now or utcnow()
        expires = now + timedelta(seconds=lease_s)
        claimable = or_(
            JobRow.status == QUEUED,
            and_(
                JobRow.status == RUNNING,
                JobRow.lease_owner.is_not(None),
                JobRow.lease_expires_at < now,
            ),
        )
        for _ in range(8):  # another worker may win the row between select and update: try the next
            with self._store.session() as s:
                query = select(JobRow.id, JobRow.status).where(claimable).order_by(JobRow.created_at)
                if s.get_bind().dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                row = s.execute(query.limit(1)).first()
                if row is None:
                    return None
                job_id, status = row
                taken = s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, claimable)
                    .values(
                        status=RUNNING,
                        lease_owner=worker_id,
                        lease_expires_at=expires,
                        claims=JobRow.claims + 1,
                    )
                )
                if getattr(taken, "rowcount", 0) == 1:
                    spec_json = s.scalar(select(JobRow.spec_json).where(JobRow.id == job_id))
                    return Claim(
                        job_id=job_id,
                        spec_json=str(spec_json),
                        worker_id=worker_id,
                        lease_expires_at=expires,
                        resumed=status == RUNNING,
                    )
        return None

    def unfinished(self) -> int:
        """Jobs a worker holds or may claim: queued, or running under a lease (held or expired).

        A job run directly (the CLI, no lease) is not counted: no worker will ever claim it.
        """
        pending = or_(
            JobRow.status == QUEUED, and_(JobRow.status == RUNNING, JobRow.lease_owner.is_not(None))
        )
        with self._store.session() as s:
            return int(s.scalar(select(func.count()).select_from(JobRow).where(pending)) or 0)

    def renew(self, job_id: str, worker_id: str, *, lease_s: float, now: datetime | None = None) -> bool:
        """Extend the lease; False if this worker no longer holds the job (it must stop)."""
        now = now or utcnow()
        with self._store.session() as s:
            result = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.lease_owner == worker_id,
                    JobRow.status == RUNNING,
                    JobRow.lease_expires_at >= now,
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
            )
            return getattr(result, "rowcount", 0) == 1

    def release(self, job_id: str, worker_id: str) -> None:
        """Give up the lease (the job finished, or the worker is shutting down cleanly)."""
        with self._store.session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def fail(self, job_id: str, worker_id: str, *, reason: str) -> bool:
        """End a job this worker holds as failed (it cannot run at all); False if it holds it no more."""
        with self._store.session() as s:
            result = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.status == RUNNING)
                .values(status="failed", stop_reason=reason, delivered=0, finished_at=utcnow())
            )
            return getattr(result, "rowcount", 0) == 1

    def requeue(self, job_id: str, worker_id: str) -> None:
        """Hand a job this worker holds back to the queue at once (a clean shutdown mid-job)."""
        with self._store.session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.status == RUNNING)
                .values(lease_owner=worker_id, lease_expires_at=datetime.fromtimestamp(0, UTC))
            )
