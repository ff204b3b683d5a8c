"""``imagefunnel bench load``: N jobs in flight for a bounded time, at 1, 3 and 6 worker processes.

Each run gets a database of its own on the PostgreSQL server, one emulated market (in this process,
over loopback HTTP) and W ``imagefunnel worker`` processes. The load is a closed loop: N jobs are
queued, and each one that ends is replaced at once, until ``duration_s`` has passed; then the
workers are stopped (SIGTERM) and only jobs that ended inside the window count. Every worker runs
``ceil(N / W)`` jobs at once, so the capacity offered is the same N at every W: what changes is how
many processes (event loops, GILs, scoring pools) share it.

Measured per run: delivered images per second, job time (queued to ended) p50 and p99, errors
(jobs that did not deliver, attempts that failed at a provider), and each worker's peak RSS.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select

from imagefunnel.bench.scratch import scratch_database
from imagefunnel.cli.market_serve import MARKET_KEY_ENV, providers_file
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.spec import JobSpec
from imagefunnel.store import Store
from imagefunnel.store.models import JobRow, LedgerRow
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers.process import WorkerStats

__all__ = ["LoadRun", "LoadSettings", "load_scenario", "run_load"]

MODEL = "fal-ai/flux/dev"
_READY_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSettings:
    workers: tuple[int, ...] = (1, 3, 6)
    jobs_in_flight: int = 12
    duration_s: float = 30.0
    deliver: int = 2
    lease_s: float = 30.0
    image_side: int = 256


@dataclass(frozen=True, slots=True)
class LoadRun:
    workers: int
    jobs_per_worker: int
    window_s: float
    jobs_ended: int
    jobs_not_delivered: int
    delivered_images: int
    failed_attempts: int
    job_seconds: tuple[float, ...]
    peak_rss_mb: tuple[float, ...]

    @property
    def images_per_s(self) -> float:
        return self.delivered_images / self.window_s

    def job_quantile(self, q: float) -> float:
        values = sorted(self.job_seconds)
        if len(values) < 2:
            return values[0] if values else math.nan
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def load_scenario() -> Scenario:
    """Two fal providers with 0.2-0.5 s of processing and a fifth of their images defective."""
    providers = [
        {
            "name": name,
            "protocol": "fal",
            "models": [MODEL],
            "price_usd_per_mp": price,
            "processing_s": [0.2, 0.5],
            "defect_rate": 0.2,
            "defect_mix": {"noise": 1, "blur": 1},
        }
        for name, price in (("north", 0.02), ("south", 0.024))
    ]
    return Scenario.model_validate({"name": "load", "seed": 21, "providers": providers})


def run_load(
    settings: LoadSettings, *, server_url: str, progress: Callable[[str], None] = lambda _m: None
) -> list[LoadRun]:
    """One run per worker count of ``settings``, each on a fresh database of ``server_url``."""
    runs = []
    for workers in settings.workers:
        progress(f"{workers} worker(s): starting")
        runs.append(_one_run(settings, workers, server_url))
        run = runs[-1]
        progress(f"{workers} worker(s): {run.images_per_s:.2f} images/s, {run.jobs_ended} jobs ended")
    return runs


def _one_run(settings: LoadSettings, workers: int, server_url: str) -> LoadRun:
    per_worker = math.ceil(settings.jobs_in_flight / workers)
    with (
        scratch_database(server_url, prefix="if_bench") as url,
        tempfile.TemporaryDirectory() as tmp,
        MarketServer(load_scenario()) as market,
    ):
        folder = Path(tmp)
        store = Store(url)  # migrated before the workers start
        providers = folder / "providers.yaml"
        document = providers_file(market, MODEL).model_dump(mode="json", exclude_defaults=True)
        providers.write_text(yaml.safe_dump(document), encoding="utf-8")
        procs = [
            _start_worker(url, providers, folder, i, per_worker, settings.lease_s) for i in range(workers)
        ]
        try:
            _wait_ready(folder, workers)
            started = time.monotonic()
            window_start = _db_now(store)
            _keep_in_flight(store, settings, until=started + settings.duration_s)
            window_end = _db_now(store)
        finally:
            _stop(procs)
        stats = [WorkerStats(**json.loads((folder / f"w{i}.json").read_text())) for i in range(workers)]
        try:
            return _measure(store, workers, per_worker, window_start, window_end, stats)
        finally:
            store.close()


def _start_worker(
    url: str, providers: Path, folder: Path, index: int, jobs: int, lease_s: float
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "imagefunnel", "worker", "--store", url, "--providers", str(providers)]
    args += ["--jobs", str(jobs), "--lease-s", str(lease_s), "--blobs", str(folder / "blobs")]
    args += ["--worker-id", f"w{index}", "--stats", str(folder / f"w{index}.json")]
    env = {**os.environ, MARKET_KEY_ENV: "bench", "PYTHONUNBUFFERED": "1"}
    with (folder / f"w{index}.log").open("wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_ready(folder: Path, workers: int) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not all(" ready:" in (folder / f"w{i}.log").read_text() for i in range(workers)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers did not start within {_READY_TIMEOUT_S:.0f}s")
        time.sleep(0.1)


def _keep_in_flight(store: Store, settings: LoadSettings, *, until: float) -> None:
    """Queue jobs so that ``jobs_in_flight`` are queued or running, until the clock says ``until``."""
    queue = JobQueue(store)
    submitted = 0
    while time.monotonic() < until:
        for _ in range(settings.jobs_in_flight - queue.unfinished()):
            spec = _spec(settings, seed=submitted)
            queue.enqueue(
                job_id=f"load-{submitted:05d}",
                name=spec.name,
                spec_json=spec.model_dump_json(),
                deliver=spec.deliver,
            )
            submitted += 1
        time.sleep(0.1)


def _spec(settings: LoadSettings, *, seed: int) -> JobSpec:
    side = settings.image_side
    return JobSpec.model_validate(
        {
            "name": "load",
            "use_case": "generic",
            "prompts": ["a product photo of a mug on a table"],
            "size": {"width": side, "height": side},
            "deliver": settings.deliver,
            "max_candidates": 4 * settings.deliver,
            "concurrency": 4,
            "budget_usd": 1.0,
            "deadline_s": 600,
            "seed": seed,
        }
    )


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _db_now(store: Store) -> datetime:
    """The database's clock: the one the workers' job timestamps are compared with."""
    with store.session() as s:
        now = s.scalar(select(func.now()))
    if not isinstance(now, datetime):
        raise TypeError(f"the database answered now() with {now!r}")
    return now


def _measure(
    store: Store, workers: int, per_worker: int, start: datetime, end: datetime, stats: Sequence[WorkerStats]
) -> LoadRun:
    with store.session() as s:
        ended = list(
            s.scalars(select(JobRow).where(JobRow.finished_at.is_not(None), JobRow.finished_at <= end))
        )
        failed = s.scalar(
            select(func.count())
            .select_from(LedgerRow)
            .where(LedgerRow.status == "failed", LedgerRow.started_at <= end)
        )
    window = end - start
    times = tuple((j.finished_at - j.created_at).total_seconds() for j in ended if j.finished_at is not None)
    return LoadRun(
        workers=workers,
        jobs_per_worker=per_worker,
        window_s=window.total_seconds(),
        jobs_ended=len(ended),
        jobs_not_delivered=sum(1 for j in ended if j.status != "delivered"),
        delivered_images=sum(j.delivered for j in ended),
        failed_attempts=int(failed or 0),
        job_seconds=times,
        peak_rss_mb=tuple(w.peak_rss_mb for w in stats),
    )
