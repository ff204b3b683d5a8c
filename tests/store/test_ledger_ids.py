"""The ledger names an attempt by the provider's id at submission and keeps it whatever follows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagefunnel.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.start_job(job_id="job", name="j", spec_json="{}", deliver=1)
    yield s
    s.close()


def _begin(store: Store, request_id: str) -> None:
    store.begin_attempt(
        job_id="job", request_id=request_id, attempt=1, wave=1, provider="p", model="m", quoted_usd=0.25
    )


def test_an_id_named_at_submission_survives_a_failure_that_reports_none(store: Store) -> None:
    _begin(store, "job-00000")
    store.submitted(request_id="job-00000", attempt=1, provider_request_id="prov-1")
    (row,) = store.in_flight("job")
    assert row.provider_request_id == "prov-1"
    store.end_attempt(request_id="job-00000", attempt=1, status="failed", charged_usd=0.0, latency_s=1.0)
    (ended,) = store.ledger("job")
    assert (ended.status, ended.provider_request_id) == ("failed", "prov-1")
    assert store.in_flight("job") == []


def test_a_crash_closes_named_attempts_as_interrupted_and_unnamed_ones_as_lost(store: Store) -> None:
    _begin(store, "job-00000")
    store.submitted(request_id="job-00000", attempt=1, provider_request_id="prov-1")
    _begin(store, "job-00001")
    assert store.interrupt_in_flight("job") == 2
    rows = {r.request_id: r for r in store.ledger("job")}
    assert (rows["job-00000"].status, rows["job-00000"].provider_request_id) == ("interrupted", "prov-1")
    assert (rows["job-00001"].status, rows["job-00001"].provider_request_id) == ("lost", None)
    assert all(r.charged_usd == r.quoted_usd for r in rows.values())  # the quote: an upper bound
