"""How long this store's jobs took to judge a candidate, read from what every job already records.

The funnel scores a candidate inside its request's slot, so the time from the provider's answer
(the ledger row's ``finished_at``) to the recorded verdict (the candidate row's ``created_at``) is
time the slot is held on top of the provider's latency: decoding, the scorer's dimensions, hashing
and the wait for a free executor when candidates arrive together. A quote adds it per candidate.
No table of its own: the two timestamps are written by every job.
"""

from __future__ import annotations

import statistics

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from imagefunnel.errors import StoreError
from imagefunnel.store.models import CandidateRow, JobRow, LedgerRow

__all__ = ["LATEST", "scoring_seconds"]

LATEST = 200  # the newest candidates of the use case: recent machines and scorers, not history


def scoring_seconds(engine: Engine, use_case: str, *, latest: int = LATEST) -> float | None:
    """The median seconds from a provider's answer to its candidate's verdict over the ``latest``
    candidates of ``use_case`` jobs in this store (None: none recorded yet)."""
    # The spec is stored as its JSON (``JobSpec.model_dump_json``, no spaces): its use case is this text.
    marker = f'%"use_case":"{use_case}"%'
    query = (
        select(CandidateRow.created_at, LedgerRow.finished_at)
        .join(
            LedgerRow,
            and_(
                LedgerRow.job_id == CandidateRow.job_id,
                LedgerRow.request_id == CandidateRow.request_id,
                LedgerRow.status == "succeeded",
            ),
        )
        .join(JobRow, JobRow.id == CandidateRow.job_id)
        .where(JobRow.spec_json.like(marker), LedgerRow.finished_at.is_not(None))
        .order_by(CandidateRow.id.desc())
        .limit(latest)
    )
    try:
        with Session(engine) as session:
            rows = session.execute(query).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read scoring times: {exc}") from exc
    # A re-attached candidate (resume) is recorded long after its answer: no scoring time of its own.
    times = [
        (created - finished).total_seconds()
        for created, finished in rows
        if finished is not None and 0 <= (created - finished).total_seconds() < 600
    ]
    return statistics.median(times) if times else None
