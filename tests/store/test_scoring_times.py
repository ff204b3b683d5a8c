"""The store's scoring time: from a provider's answer to its candidate's verdict, per use case."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from imagefunnel.spec import JobSpec
from imagefunnel.store import CandidateRecord, Store
from imagefunnel.store.models import CandidateRow, LedgerRow
from imagefunnel.store.scoring_times import scoring_seconds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


def job(store: Store, job_id: str, use_case: str, scoring: list[float]) -> None:
    """A job of ``use_case`` whose n-th candidate was judged ``scoring[n]`` seconds after its answer
    (and a failed attempt before each, on another provider, which has no verdict of its own)."""
    spec = JobSpec.model_validate(
        {"use_case": use_case, "prompts": ["a"], "deliver": 1, "budget_usd": 1.0}
        | ({"source": __file__} if use_case == "background_removal" else {})
    )
    store.start_job(job_id=job_id, name="j", spec_json=spec.model_dump_json(), deliver=1)
    for n, seconds in enumerate(scoring):
        request_id = f"{job_id}-{n:05d}"
        for attempt, status in ((1, "failed"), (2, "succeeded")):
            store.begin_attempt(
                job_id=job_id,
                request_id=request_id,
                attempt=attempt,
                wave=1,
                provider="p",
                model="m",
                quoted_usd=0.01,
            )
            store.end_attempt(
                request_id=request_id, attempt=attempt, status=status, charged_usd=0.0, latency_s=1.0
            )
        answered = T0 + timedelta(minutes=n)
        store.add_candidate(
            CandidateRecord(
                job_id, request_id, 1, "p", "x", "0" * 64, "image/png", None, True, None, 1.0, 0.0, 1.0, ()
            )
        )
        with store.session() as s:
            for attempt, at in ((1, answered - timedelta(seconds=30)), (2, answered)):
                s.execute(
                    update(LedgerRow)
                    .where(LedgerRow.request_id == request_id, LedgerRow.attempt == attempt)
                    .values(finished_at=at)
                )
            s.execute(
                update(CandidateRow)
                .where(CandidateRow.request_id == request_id)
                .values(created_at=answered + timedelta(seconds=seconds))
            )


def test_the_median_time_from_answer_to_verdict_of_the_use_cases_jobs(store: Store) -> None:
    assert scoring_seconds(store.engine, "headshot") is None  # nothing recorded yet
    job(store, "a", "headshot", [0.4, 0.5, 3.0])
    job(store, "b", "generic", [0.1, 0.1, 0.1])
    assert scoring_seconds(store.engine, "headshot") == pytest.approx(0.5)
    assert scoring_seconds(store.engine, "generic") == pytest.approx(0.1)
    assert scoring_seconds(store.engine, "product") is None


def test_only_the_newest_candidates_count(store: Store) -> None:
    job(store, "old", "headshot", [2.0, 2.0, 2.0])
    job(store, "new", "headshot", [0.3, 0.3])
    assert scoring_seconds(store.engine, "headshot", latest=2) == pytest.approx(0.3)
    assert scoring_seconds(store.engine, "headshot", latest=5) == pytest.approx(2.0)
