"""The job store: every job, attempt (ledger row), candidate and score, behind typed methods."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from imagefunnel.errors import StoreError
from imagefunnel.store.migrate import upgrade
from imagefunnel.store.models import CandidateRow, JobRow, LedgerRow, ScoreRow, utcnow


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What a job had achieved when it stopped: enough to resume it without re-buying anything."""

    age_s: float
    candidates: int
    passed: tuple[tuple[int, float], ...]  # (candidate id, quality)
    passed_hashes: tuple[tuple[int, str], ...]
    next_request_index: int
    last_wave: int


@dataclass(frozen=True, slots=True)
class InFlight:
    """An attempt the ledger holds as dispatched; ``provider_request_id`` once the provider named it."""

    request_id: str
    attempt: int
    wave: int
    provider: str
    model: str
    quoted_usd: float
    provider_request_id: str | None
    # When the intent was written (UTC): the provider cannot have taken the request before it.
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobEnding:
    """How a job is about to end (:meth:`Store.finish_job`), for what must be written with it."""

    job_id: str
    status: str
    stop_reason: str
    delivered: int
    finished_at: datetime


# Given how a job ends, what to write in the same transaction (None: nothing).
FinishHook = Callable[[JobEnding], Callable[[Session], None] | None]


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    dimension: str
    tier: int
    value: float | None
    threshold: float | None
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    job_id: str
    request_id: str
    wave: int
    provider: str
    provider_request_id: str
    blob_sha256: str
    content_type: str
    phash: str | None
    passed: bool
    duplicate_of: int | None
    quality: float
    charged_usd: float
    latency_s: float
    scores: tuple[ScoreRecord, ...]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class Store:
    """Open with a SQLAlchemy URL (``sqlite:///path.db`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = create_engine(url, future=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {url!r}: {exc}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._finishing: dict[str, FinishHook] = {}

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"store operation failed: {exc}") from exc

    # -- jobs -------------------------------------------------------------------------------------
    def create_job(self, *, job_id: str, name: str, spec_json: str, deliver: int) -> None:
        with self.session() as s:
            s.add(JobRow(id=job_id, name=name, spec_json=spec_json, deliver=deliver, status="running"))

    def start_job(self, *, job_id: str, name: str, spec_json: str, deliver: int) -> None:
        """Create the job as running, or mark a queued one (submitted for a worker) as running."""
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                s.add(JobRow(id=job_id, name=name, spec_json=spec_json, deliver=deliver, status="running"))
            elif row.status == "queued":
                row.status = "running"
            elif row.status != "running":
                raise StoreError(f"job {job_id!r} has already ended ({row.status})")

    @contextmanager
    def finishing(self, job_id: str, hook: FinishHook) -> Iterator[None]:
        """While inside, ending ``job_id`` also writes what ``hook`` makes of its ending, in the
        same transaction: a reader never sees the job ended without it (a queued job's quote check)."""
        self._finishing[job_id] = hook
        try:
            yield
        finally:
            self._finishing.pop(job_id, None)

    def finish_job(self, job_id: str, *, status: str, stop_reason: str, delivered: int) -> None:
        """End a job. Its lease ends in the same statement: a worker killed between finishing a
        job and releasing it must not leave a finished job held by a dead worker. What a
        :meth:`finishing` hook prepares is written in the same transaction."""
        finished_at = utcnow()
        hook = self._finishing.get(job_id)
        also = hook(JobEnding(job_id, status, stop_reason, delivered, finished_at)) if hook else None
        with self.session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    status=status,
                    stop_reason=stop_reason,
                    delivered=delivered,
                    finished_at=finished_at,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if also is not None:
                also(s)

    def job(self, job_id: str) -> JobRow:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise StoreError(f"no job {job_id!r}")
            return row

    # -- ledger -----------------------------------------------------------------------------------
    def begin_attempt(
        self,
        *,
        job_id: str,
        request_id: str,
        attempt: int,
        wave: int,
        provider: str,
        model: str,
        quoted_usd: float,
    ) -> None:
        """Record the intent to buy before the call, so a crash can never hide a spend."""
        with self.session() as s:
            s.add(
                LedgerRow(
                    job_id=job_id,
                    request_id=request_id,
                    attempt=attempt,
                    wave=wave,
                    provider=provider,
                    model=model,
                    status="dispatched",
                    quoted_usd=quoted_usd,
                )
            )

    def submitted(self, *, request_id: str, attempt: int, provider_request_id: str) -> None:
        """Name the attempt by the provider's id the moment the provider accepts it, before its
        result: a crash from then on leaves a request that can be matched with the provider's bill
        and re-attached on resume."""
        with self.session() as s:
            s.execute(
                update(LedgerRow)
                .where(LedgerRow.request_id == request_id, LedgerRow.attempt == attempt)
                .values(provider_request_id=provider_request_id)
            )

    def end_attempt(
        self,
        *,
        request_id: str,
        attempt: int,
        status: str,
        charged_usd: float,
        latency_s: float,
        provider_request_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        outcome: dict[str, object] = {
            "status": status,
            "charged_usd": charged_usd,
            "latency_s": latency_s,
            "error": error,
            "error_type": error_type,
            "finished_at": utcnow(),
        }
        if provider_request_id is not None:  # else keep the id recorded at submission
            outcome["provider_request_id"] = provider_request_id
        with self.session() as s:
            s.execute(
                update(LedgerRow)
                .where(LedgerRow.request_id == request_id, LedgerRow.attempt == attempt)
                .values(**outcome)
            )

    def in_flight(self, job_id: str) -> list[InFlight]:
        """Attempts of ``job_id`` still ``dispatched``: in flight, or cut off by a crash."""
        return self._attempts(job_id, LedgerRow.status == "dispatched")

    def bought_unrecorded(self, job_id: str) -> list[InFlight]:
        """Attempts that succeeded (the image was paid for) but whose request has no candidate: the
        process died while scoring it. Only those the provider named can be fetched again."""
        recorded = select(CandidateRow.request_id).where(CandidateRow.job_id == job_id)
        return self._attempts(
            job_id,
            LedgerRow.status == "succeeded",
            LedgerRow.provider_request_id.is_not(None),
            LedgerRow.request_id.not_in(recorded),
        )

    def _attempts(self, job_id: str, *conditions: ColumnElement[bool]) -> list[InFlight]:
        with self.session() as s:
            rows = s.scalars(
                select(LedgerRow).where(LedgerRow.job_id == job_id, *conditions).order_by(LedgerRow.id)
            )
            return [
                InFlight(
                    request_id=r.request_id,
                    attempt=r.attempt,
                    wave=r.wave,
                    provider=r.provider,
                    model=r.model,
                    quoted_usd=r.quoted_usd,
                    provider_request_id=r.provider_request_id,
                    # SQLite hands back naive datetimes; every one the store writes is UTC.
                    started_at=r.started_at.replace(tzinfo=r.started_at.tzinfo or UTC),
                )
                for r in rows
            ]

    def interrupt_in_flight(self, job_id: str) -> int:
        """Close attempts whose outcome was lost in a crash, charging them at their quote.

        ``interrupted``: the provider had named the request, so it can still be matched with the
        provider's bill. ``lost``: the crash came before the provider's answer, so whether it ever
        received the request is unknown (a queue that takes no client-chosen id or idempotency key
        leaves that window open); its quote is the upper bound charged.
        """
        closed = 0
        with self.session() as s:
            for named, status, detail in (
                (True, "interrupted", "outcome unknown"),
                (False, "lost", "the provider had not yet named it; whether it received it is unknown"),
            ):
                has_id = LedgerRow.provider_request_id.is_not(None)
                result = s.execute(
                    update(LedgerRow)
                    .where(
                        LedgerRow.job_id == job_id,
                        LedgerRow.status == "dispatched",
                        has_id if named else LedgerRow.provider_request_id.is_(None),
                    )
                    .values(
                        status=status,
                        charged_usd=LedgerRow.quoted_usd,
                        error=f"the process stopped while this request was in flight; {detail}",
                        error_type="Interrupted",
                        finished_at=utcnow(),
                    )
                )
                closed += int(getattr(result, "rowcount", 0) or 0)
        return closed

    def progress(self, job_id: str) -> JobProgress:
        job = self.job(job_id)
        created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
        with self.session() as s:
            rows = list(s.scalars(select(CandidateRow).where(CandidateRow.job_id == job_id)))
            request_ids = list(s.scalars(select(LedgerRow.request_id).where(LedgerRow.job_id == job_id)))
            last_wave = s.scalar(
                select(func.coalesce(func.max(LedgerRow.wave), 0)).where(LedgerRow.job_id == job_id)
            )
        # Request ids end in a running index ("<job>-00042"): resume after the highest one used.
        suffixes = [rid.rsplit("-", 1)[-1] for rid in [*request_ids, *(r.request_id for r in rows)]]
        indices = [int(suffix) for suffix in suffixes if suffix.isdigit()]
        passed = [r for r in rows if r.passed]
        return JobProgress(
            age_s=(utcnow() - created).total_seconds(),
            candidates=len(rows),
            passed=tuple((r.id, r.quality) for r in passed),
            passed_hashes=tuple((r.id, r.phash) for r in passed if r.phash),
            next_request_index=max(indices, default=-1) + 1,
            last_wave=int(last_wave or 0),
        )

    def delivered_ids(self, job_id: str) -> list[int]:
        with self.session() as s:
            rows = s.scalars(
                select(CandidateRow.id)
                .where(CandidateRow.job_id == job_id, CandidateRow.delivered.is_(True))
                .order_by(CandidateRow.rank)
            )
            return list(rows)

    def jobs(self, *, status: str | None = None) -> Sequence[JobRow]:
        with self.session() as s:
            query = select(JobRow).order_by(JobRow.created_at)
            if status is not None:
                query = query.where(JobRow.status == status)
            return list(s.scalars(query))

    def spent_usd(self, job_id: str) -> float:
        """Charged so far plus the quotes of attempts still in flight."""
        charged = func.coalesce(LedgerRow.charged_usd, LedgerRow.quoted_usd)
        with self.session() as s:
            total = s.scalar(select(func.coalesce(func.sum(charged), 0.0)).where(LedgerRow.job_id == job_id))
            return float(total or 0.0)

    def ledger(self, job_id: str) -> Sequence[LedgerRow]:
        with self.session() as s:
            rows = s.scalars(select(LedgerRow).where(LedgerRow.job_id == job_id).order_by(LedgerRow.id))
            return list(rows)

    # -- candidates -------------------------------------------------------------------------------
    def add_candidate(self, record: CandidateRecord) -> int:
        with self.session() as s:
            row = CandidateRow(
                job_id=record.job_id,
                request_id=record.request_id,
                wave=record.wave,
                provider=record.provider,
                provider_request_id=record.provider_request_id,
                blob_sha256=record.blob_sha256,
                content_type=record.content_type,
                phash=record.phash,
                passed=record.passed,
                duplicate_of=record.duplicate_of,
                quality=record.quality,
                charged_usd=record.charged_usd,
                latency_s=record.latency_s,
            )
            s.add(row)
            s.flush()
            s.add_all(
                ScoreRow(
                    candidate_id=row.id,
                    dimension=score.dimension,
                    tier=score.tier,
                    value=score.value,
                    threshold=score.threshold,
                    passed=score.passed,
                    reason=score.reason,
                )
                for score in record.scores
            )
            return row.id

    def mark_delivered(self, ranked_candidate_ids: Sequence[int]) -> None:
        with self.session() as s:
            for rank, candidate_id in enumerate(ranked_candidate_ids, start=1):
                s.execute(
                    update(CandidateRow)
                    .where(CandidateRow.id == candidate_id)
                    .values(delivered=True, rank=rank)
                )

    def candidates(self, job_id: str) -> Sequence[CandidateRow]:
        with self.session() as s:
            rows = s.scalars(
                select(CandidateRow).where(CandidateRow.job_id == job_id).order_by(CandidateRow.id)
            )
            return list(rows)

    def scores(self, candidate_ids: Sequence[int]) -> dict[int, list[ScoreRow]]:
        out: dict[int, list[ScoreRow]] = {cid: [] for cid in candidate_ids}
        with self.session() as s:
            for row in s.scalars(select(ScoreRow).where(ScoreRow.candidate_id.in_(candidate_ids))):
                out[row.candidate_id].append(row)
        return out
