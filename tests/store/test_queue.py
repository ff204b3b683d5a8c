"""The job queue on both databases: one holder per job, leases expire, a lost lease is refused."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from imagefunnel.errors import StoreError
from imagefunnel.store import Store
from imagefunnel.store.models import utcnow
from imagefunnel.store.queue import JobQueue


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _enqueue(queue: JobQueue, n: int) -> list[str]:
    ids = [f"job-{i:02d}" for i in range(n)]
    for job_id in ids:
        queue.enqueue(job_id=job_id, name=job_id, spec_json='{"k": 1}', deliver=1)
    return ids


def test_claims_oldest_queued_job_and_marks_it_running(store: Store) -> None:
    queue = JobQueue(store)
    first, _second = _enqueue(queue, 2)
    claim = queue.claim("w1", lease_s=30)
    assert claim is not None
    assert (claim.job_id, claim.worker_id, claim.resumed, claim.spec_json) == (first, "w1", False, '{"k": 1}')
    row = store.job(first)
    assert (row.status, row.lease_owner, row.claims) == ("running", "w1", 1)


def test_nothing_to_claim_is_none(store: Store) -> None:
    assert JobQueue(store).claim("w1", lease_s=30) is None


def test_concurrent_workers_never_share_a_job(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]
    try:
        ids = _enqueue(JobQueue(stores[0]), 24)
        won: list[tuple[str, str]] = []
        lock = threading.Lock()
        start = threading.Barrier(len(stores))

        def work(worker: int) -> None:
            queue = JobQueue(stores[worker])
            start.wait()
            while (claim := queue.claim(f"w{worker}", lease_s=60)) is not None:
                with lock:
                    won.append((claim.job_id, claim.worker_id))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        counts = Counter(job_id for job_id, _ in won)
        assert sorted(counts) == ids
        assert set(counts.values()) == {1}
        for job_id, worker in won:
            assert stores[0].job(job_id).lease_owner == worker
    finally:
        for s in stores:
            s.close()


def test_an_expired_lease_is_claimed_again_as_a_resume(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    now = utcnow()
    assert queue.claim("dead", lease_s=10, now=now) is not None
    assert queue.claim("w2", lease_s=10, now=now + timedelta(seconds=5)) is None  # still held
    claim = queue.claim("w2", lease_s=10, now=now + timedelta(seconds=11))
    assert claim is not None
    assert (claim.job_id, claim.resumed) == (job_id, True)
    assert store.job(job_id).claims == 2
    # The old holder's renewal is refused: it lost the job and must stop.
    assert not queue.renew(job_id, "dead", lease_s=10, now=now + timedelta(seconds=12))
    assert queue.renew(job_id, "w2", lease_s=10, now=now + timedelta(seconds=12))


def test_renewal_after_expiry_is_refused_even_if_nobody_claimed(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    now = utcnow()
    queue.claim("w1", lease_s=10, now=now)
    assert not queue.renew(job_id, "w1", lease_s=10, now=now + timedelta(seconds=11))


def test_a_job_run_directly_is_never_claimed(store: Store) -> None:
    store.start_job(job_id="cli-job", name="n", spec_json="{}", deliver=1)
    assert JobQueue(store).claim("w1", lease_s=10, now=utcnow() + timedelta(days=1)) is None


def test_finished_jobs_are_never_claimed_and_release_clears_the_lease(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    queue.claim("w1", lease_s=10)
    store.finish_job(job_id, status="delivered", stop_reason="1 of 1 passed", delivered=1)
    queue.release(job_id, "w1")
    row = store.job(job_id)
    assert (row.status, row.lease_owner, row.lease_expires_at) == ("delivered", None, None)
    assert queue.claim("w2", lease_s=10, now=utcnow() + timedelta(days=1)) is None


def test_requeue_hands_the_job_to_the_next_worker_at_once(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    queue.claim("w1", lease_s=600)
    queue.requeue(job_id, "w1")
    claim = queue.claim("w2", lease_s=600)
    assert claim is not None
    assert (claim.job_id, claim.resumed) == (job_id, True)


def test_start_job_runs_a_queued_job_and_refuses_an_ended_one(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    store.start_job(job_id=job_id, name="x", spec_json="{}", deliver=1)
    assert store.job(job_id).status == "running"
    store.finish_job(job_id, status="failed", stop_reason="x", delivered=0)
    with pytest.raises(StoreError, match="already ended"):
        store.start_job(job_id=job_id, name="x", spec_json="{}", deliver=1)


def test_only_the_holder_can_fail_a_job(store: Store) -> None:
    queue = JobQueue(store)
    (job_id,) = _enqueue(queue, 1)
    now = utcnow()
    queue.claim("w1", lease_s=10, now=now)
    queue.claim("w2", lease_s=10, now=now + timedelta(seconds=11))  # w1's lease ran out: w2 has it
    assert not queue.fail(job_id, "w1", reason="w1 gave up")
    assert store.job(job_id).status == "running"
    assert queue.fail(job_id, "w2", reason="spec cannot run")
    row = store.job(job_id)
    assert (row.status, row.stop_reason) == ("failed", "spec cannot run")


def test_unfinished_counts_what_workers_hold_or_may_claim(store: Store) -> None:
    queue = JobQueue(store)
    first, second, third = _enqueue(queue, 3)
    store.start_job(job_id="cli-job", name="n", spec_json="{}", deliver=1)  # no lease: not a worker's
    assert queue.unfinished() == 3
    queue.claim("w1", lease_s=10)
    assert queue.unfinished() == 3  # one held, two queued
    store.finish_job(first, status="delivered", stop_reason="done", delivered=1)
    queue.release(first, "w1")
    assert queue.unfinished() == 2
    for job_id in (second, third):
        store.finish_job(job_id, status="failed", stop_reason="x", delivered=0)
    assert queue.unfinished() == 0
