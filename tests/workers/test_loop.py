"""The worker loop over real HTTP against the emulated market, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from imagefunnel.cli.demo import market_providers
from imagefunnel.market.server import MarketServer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.models import JobRow, utcnow
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers import JobWorker, WorkerSettings

MODEL = "fal-ai/flux/dev"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _spec(deliver: int = 2) -> JobSpec:
    return JobSpec.model_validate(
        {
            "prompts": ["a headshot"],
            "use_case": "generic",
            "deliver": deliver,
            "budget_usd": 2.0,
            "deadline_s": 60,
            "seed": 3,
        }
    )


def _enqueue(store: Store, job_id: str, spec: JobSpec) -> None:
    JobQueue(store).enqueue(
        job_id=job_id, name=spec.name, spec_json=spec.model_dump_json(), deliver=spec.deliver
    )


def _worker(store: Store, market: MarketServer, tmp_path: Path, **settings: float) -> JobWorker:
    return JobWorker(
        store=store,
        blobs=BlobStore(tmp_path / "blobs"),
        providers=lambda spec: market_providers(market, spec.model),
        settings=WorkerSettings(worker_id="w1", **settings),  # type: ignore[arg-type]
    )


async def test_runs_queued_jobs_to_their_end_and_releases_them(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    _enqueue(store, "job-a", _spec())
    _enqueue(store, "job-b", _spec(deliver=1))
    worker = _worker(store, market, tmp_path)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    for _ in range(400):
        rows = [store.job(j) for j in ("job-a", "job-b")]
        if all(r.status == "delivered" for r in rows) and len(worker.finished) == 2:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await run
    for job_id, k in (("job-a", 2), ("job-b", 1)):
        row = store.job(job_id)
        assert (row.status, row.delivered, row.lease_owner) == ("delivered", k, None)
    assert sorted(o.job_id for o in worker.finished) == ["job-a", "job-b"]


async def test_a_claim_whose_previous_holder_died_resumes_the_job(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    spec = _spec()
    _enqueue(store, "job-r", spec)
    queue = JobQueue(store)
    past = utcnow() - timedelta(minutes=5)
    assert queue.claim("dead-worker", lease_s=1, now=past) is not None  # its lease ran out long ago
    outcome = await _worker(store, market, tmp_path).run_one()
    assert outcome is not None
    assert (outcome.job_id, outcome.status) == ("job-r", "delivered")
    assert store.job("job-r").claims == 2


async def test_a_lost_lease_stops_the_job_at_once(store: Store, market: MarketServer, tmp_path: Path) -> None:
    spec = _spec(deliver=50)  # long enough to still be running when the lease is taken away
    _enqueue(store, "job-l", spec)
    worker = _worker(store, market, tmp_path, lease_s=0.6)
    task = asyncio.create_task(worker.run_one())
    for _ in range(100):
        if store.candidates("job-l"):
            break
        await asyncio.sleep(0.02)
    with store.session() as s:  # another worker took the job over
        s.execute(update(JobRow).where(JobRow.id == "job-l").values(lease_owner="w2"))
    assert await asyncio.wait_for(task, timeout=10) is None
    row = store.job("job-l")
    assert (row.status, row.lease_owner) == ("running", "w2")  # left for its new holder
    assert len(store.candidates("job-l")) < 50
