from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from imagefunnel.errors import StoreError
from imagefunnel.store import BlobStore, CandidateRecord, ScoreRecord, Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _candidate(job_id: str, request_id: str, passed: bool) -> CandidateRecord:
    return CandidateRecord(
        job_id=job_id,
        request_id=request_id,
        wave=1,
        provider="p",
        provider_request_id="x",
        blob_sha256="0" * 64,
        content_type="image/png",
        phash=None,
        passed=passed,
        duplicate_of=None,
        quality=0.5,
        charged_usd=0.01,
        latency_s=0.2,
        scores=(
            ScoreRecord("sharpness", 1, 0.3, 0.1, True, "ok"),
            ScoreRecord("noise", 1, 9.0, 5.0, False, "noisy"),
        ),
    )


def test_migrations_create_every_table(store: Store) -> None:
    assert {"jobs", "ledger", "candidates", "scores", "alembic_version"} <= set(
        inspect(store.engine).get_table_names()
    )


def test_reopening_an_existing_store_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = Store(url)
    first.create_job(job_id="j1", name="a", spec_json="{}", deliver=3)
    first.close()
    second = Store(url)
    assert second.job("j1").deliver == 3
    second.close()


def test_ledger_counts_in_flight_quotes_then_actual_charges(store: Store) -> None:
    store.create_job(job_id="j", name="a", spec_json="{}", deliver=1)
    store.begin_attempt(
        job_id="j", request_id="r1", attempt=1, wave=1, provider="p", model="m", quoted_usd=0.02
    )
    assert store.spent_usd("j") == pytest.approx(0.02)
    store.end_attempt(
        request_id="r1", attempt=1, status="failed", charged_usd=0.0, latency_s=0.1, error="500"
    )
    store.begin_attempt(
        job_id="j", request_id="r1", attempt=2, wave=1, provider="q", model="m", quoted_usd=0.03
    )
    store.end_attempt(request_id="r1", attempt=2, status="succeeded", charged_usd=0.025, latency_s=0.2)
    assert store.spent_usd("j") == pytest.approx(0.025)
    rows = store.ledger("j")
    assert [(r.provider, r.status, r.quoted_usd, r.charged_usd) for r in rows] == [
        ("p", "failed", 0.02, 0.0),
        ("q", "succeeded", 0.03, 0.025),
    ]


def test_same_attempt_cannot_be_recorded_twice(store: Store) -> None:
    store.create_job(job_id="j", name="a", spec_json="{}", deliver=1)
    store.begin_attempt(
        job_id="j", request_id="r1", attempt=1, wave=1, provider="p", model="m", quoted_usd=0.02
    )
    with pytest.raises(StoreError):
        store.begin_attempt(
            job_id="j", request_id="r1", attempt=1, wave=1, provider="p", model="m", quoted_usd=0.02
        )


def test_candidates_scores_and_delivery(store: Store) -> None:
    store.create_job(job_id="j", name="a", spec_json="{}", deliver=1)
    a = store.add_candidate(_candidate("j", "r1", True))
    b = store.add_candidate(_candidate("j", "r2", False))
    store.mark_delivered([a])
    store.finish_job("j", status="delivered", stop_reason="1 of 1 passed", delivered=1)
    rows = store.candidates("j")
    assert [(r.id, r.delivered, r.rank) for r in rows] == [(a, True, 1), (b, False, None)]
    scores = store.scores([a, b])
    assert [s.dimension for s in scores[b] if not s.passed] == ["noise"]
    assert store.job("j").status == "delivered"


def test_blob_store_is_content_addressed(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"hello")
    assert blobs.put(b"hello") == digest
    assert blobs.get(digest) == b"hello"
    assert blobs.path(digest).parent.name == digest[:2]
    with pytest.raises(StoreError):
        blobs.get("f" * 64)
    with pytest.raises(StoreError):
        blobs.path("../../etc/passwd")


def test_unusable_database_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
