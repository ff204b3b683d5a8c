"""Leases are kept by a thread: a worker whose event loop is stuck for longer than its lease keeps
its job, and a lost lease still stops the job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.funnel import FunnelObserver
from imagefunnel.funnel.events import WaveStarted
from imagefunnel.market.server import MarketServer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers import JobWorker, WorkerSettings
from imagefunnel.workers.lease import LeaseKeeper

MODEL = "fal-ai/flux/dev"
LEASE_S = 2.0  # long enough for a loaded machine to renew in time, short enough to wait out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def _enqueue(store: Store, job_id: str, deliver: int) -> None:
    spec = JobSpec.model_validate(
        {
            "prompts": ["a mug"],
            "use_case": "generic",
            "size": {"width": 256, "height": 256},
            "deliver": deliver,
            "budget_usd": 2.0,
        }
    )
    JobQueue(store).enqueue(job_id=job_id, name="j", spec_json=spec.model_dump_json(), deliver=deliver)


class _StallingObserver(FunnelObserver):
    """Blocks the event loop (as heavy synchronous work on a busy machine would) at every wave."""

    def wave_started(self, event: WaveStarted) -> None:
        time.sleep(2.5 * LEASE_S)


async def test_a_stuck_event_loop_does_not_cost_a_live_worker_its_job(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    _enqueue(store, "job-s", deliver=2)
    worker = JobWorker(
        store=store,
        blobs=BlobStore(tmp_path / "blobs"),
        providers=lambda spec: market_providers(market, spec.model),
        settings=WorkerSettings(worker_id="w1", lease_s=LEASE_S),
        observers=lambda _job_id: _StallingObserver(),
    )
    outcome = await worker.run_one()
    assert outcome is not None and outcome.status == "delivered"
    row = store.job("job-s")
    assert (row.status, row.claims, row.lease_owner) == ("delivered", 1, None)


def test_a_lease_lost_before_anyone_watched_it_cancels_the_job_as_soon_as_one_does(store: Store) -> None:
    _enqueue(store, "job-l", deliver=1)
    queue = JobQueue(store)
    claim = queue.claim("w1", lease_s=LEASE_S)
    assert claim is not None
    lease = LeaseKeeper(queue, claim, lease_s=LEASE_S)
    queue.requeue("job-l", "w1")  # the job goes to another worker before the first renewal
    assert queue.claim("w2", lease_s=60) is not None
    lease.start()
    deadline = time.monotonic() + 10
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = threading.Event()
    lease.on_lost(cancelled.set)
    lease.stop()
    assert lease.lost and cancelled.is_set()
    assert store.job("job-l").lease_owner == "w2"


def test_a_stopped_lease_is_no_longer_renewed(store: Store) -> None:
    _enqueue(store, "job-r", deliver=1)
    queue = JobQueue(store)
    claim = queue.claim("w1", lease_s=LEASE_S)
    assert claim is not None
    lease = LeaseKeeper(queue, claim, lease_s=LEASE_S)
    lease.start()
    time.sleep(2 * LEASE_S)  # longer than the lease: only the renewals keep it
    lease.stop()
    assert not lease.lost
    assert queue.renew("job-r", "w1", lease_s=LEASE_S)  # it was still ours when it stopped
