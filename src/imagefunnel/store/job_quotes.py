"""The quotes of queued jobs: made by the worker that first claims a job, before it buys anything.

A job keeps its first quote: a worker that re-claims it (its holder died, or handed it back) finds
the quote here and does not quote again. When the job ends, its holder adds the check of the quote
against what the job did (:func:`imagefunnel.quote_check.check_quote`). Jobs run by the CLI keep
their quotes in their output folder instead, and have no row here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imagefunnel.quote_check import QuoteCheck, QuoteRecord
from imagefunnel.store.models import JobQuoteRow
from imagefunnel.store.repository import Store

__all__ = ["JobQuotes", "StoredQuote"]


@dataclass(frozen=True, slots=True)
class StoredQuote:
    """A job's quote, when it was made, and (once the job ended) how it held."""

    job_id: str
    record: QuoteRecord
    quoted_at: datetime
    check: QuoteCheck | None


def _stored(row: JobQuoteRow) -> StoredQuote:
    return StoredQuote(
        job_id=row.job_id,
        record=QuoteRecord.model_validate_json(row.record_json),
        quoted_at=row.quoted_at,
        check=None if row.check_json is None else QuoteCheck.model_validate_json(row.check_json),
    )


class JobQuotes:
    """Quotes of the jobs of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def keep(self, job_id: str, record: QuoteRecord) -> StoredQuote:
        """Keep ``record`` as the job's quote, unless it has one already: the first quote stays."""
        with self._store.session() as s:
            row = s.get(JobQuoteRow, job_id)
            if row is None:
                row = JobQuoteRow(job_id=job_id, record_json=record.model_dump_json())
                s.add(row)
                s.flush()
            return _stored(row)

    def get(self, job_id: str) -> StoredQuote | None:
        with self._store.session() as s:
            row = s.get(JobQuoteRow, job_id)
            return None if row is None else _stored(row)

    def many(self, job_ids: Sequence[str]) -> dict[str, StoredQuote]:
        """The quotes of ``job_ids`` that have one, by job id (one query)."""
        if not job_ids:
            return {}
        with self._store.session() as s:
            rows = s.scalars(select(JobQuoteRow).where(JobQuoteRow.job_id.in_(list(job_ids))))
            return {row.job_id: _stored(row) for row in rows}

    @staticmethod
    def check_writer(job_id: str, check: QuoteCheck) -> Callable[[Session], None]:
        """Writes ``check`` as the job's quote check in a session of the caller's (a job's ending)."""
        check_json = check.model_dump_json()

        def write(session: Session) -> None:
            session.execute(
                update(JobQuoteRow).where(JobQuoteRow.job_id == job_id).values(check_json=check_json)
            )

        return write

    def set_check(self, job_id: str, check: QuoteCheck) -> None:
        """Record how the job's quote held, once the job ended (a job without a quote is left alone)."""
        with self._store.session() as s:
            row = s.get(JobQuoteRow, job_id)
            if row is not None:
                row.check_json = check.model_dump_json()
