"""``imagefunnel worker`` and ``imagefunnel submit``: run queued jobs from a shared store, queue jobs.

Several ``imagefunnel worker`` processes, on one machine or many, share one store (PostgreSQL in
production) and claim its queued jobs under leases; ``imagefunnel submit`` queues jobs there. Workers
buy from the providers of a providers file (``--providers``; for the emulated market, the file
``imagefunnel market serve`` writes, so every worker shares one market) or, for a single worker, from
an emulated market of their own (``--market``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imagefunnel.errors import SpecError

# The store, the workers and the providers are imported by the commands that use them, so that
# listing the commands (``imagefunnel --help``) does not import SQLAlchemy and the scorer.
if TYPE_CHECKING:
    from imagefunnel.funnel import FunnelOutcome
    from imagefunnel.providers.base import Provider
    from imagefunnel.spec import JobSpec
    from imagefunnel.workers import ProvidersFactory

console = Console()
err_console = Console(stderr=True)

StoreUrl = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="IMAGEFUNNEL_STORE",
        help="the shared store, e.g. postgresql+psycopg://user@db:5432/imagefunnel",
    ),
]


def worker_cmd(
    store: StoreUrl,
    providers: Annotated[
        Path | None, typer.Option(help="providers YAML (real endpoints, or `imagefunnel market serve`'s)")
    ] = None,
    market: Annotated[
        str | None, typer.Option(help="emulated market scenario of this worker's own (one worker only)")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="jobs this worker runs at once")] = 2,
    lease_s: Annotated[
        float, typer.Option(min=0.5, help="seconds a claim holds without renewal (renewed every third)")
    ] = 30.0,
    blobs: Annotated[Path, typer.Option(help="image folder (shared by the workers of one machine)")] = Path(
        "imagefunnel-out/blobs"
    ),
    shared_state: Annotated[
        str,
        typer.Option(
            envvar="IMAGEFUNNEL_SHARED_STATE",
            help="provider cooldowns shared with other workers: memory:// (this worker) or redis://host:6379/0",
        ),
    ] = "memory://",
    executor: Annotated[
        str | None,
        typer.Option(help="where candidates are scored: local://threads (default), ray, ray://head:10001"),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="this worker's name (default: host:pid:random)")
    ] = None,
    until_done: Annotated[
        bool, typer.Option(help="stop once no job is queued or running anywhere (drains, benchmarks)")
    ] = False,
    stats: Annotated[
        Path | None, typer.Option(help="write this worker's stats (jobs finished, peak RSS) as JSON here")
    ] = None,
    quote: Annotated[
        bool,
        typer.Option(
            help="quote each job as it is first claimed, before buying (a spec with confidence is "
            "quoted regardless)"
        ),
    ] = True,
) -> None:
    """Claim queued jobs from a shared store and run them until SIGTERM or SIGINT.

    Jobs still running at SIGTERM go back to the queue at once; a killed worker's jobs are resumed
    by another worker once their lease expires.
    """
    import asyncio

    from imagefunnel.routing.cooldowns import open_cooldowns
    from imagefunnel.store import BlobStore, Store
    from imagefunnel.store.queue import JobQueue
    from imagefunnel.workers import JobWorker, WorkerSettings, release_dead_local_leases
    from imagefunnel.workers.process import serve_worker

    settings = WorkerSettings(
        worker_id=worker_id or "", jobs=jobs, lease_s=lease_s, poll_s=min(0.5, lease_s / 6), quote=quote
    )
    with _providers_factory(providers, market) as factory:
        opened = Store(store)
        cooldowns = open_cooldowns(shared_state)
        try:
            worker = JobWorker(
                store=opened,
                blobs=BlobStore(blobs),
                providers=factory,
                settings=settings,
                cooldowns=cooldowns,
                executor_url=executor,
            )
            # Jobs of a worker of this host that died need not wait for their leases to run out.
            freed = release_dead_local_leases(opened)
            if freed:
                console.print(f"resuming {len(freed)} job(s) of a dead worker of this host", highlight=False)
            console.print(
                f"worker {worker.worker_id} ready: {jobs} job(s) at once, lease {lease_s:g}s, "
                f"cooldowns {shared_state.split('@')[-1]}",
                highlight=False,
            )
            result = asyncio.run(
                serve_worker(worker, JobQueue(opened), until_done=until_done, on_finished=_print_outcome)
            )
        finally:
            cooldowns.close()
            opened.close()
    if stats is not None:
        result.write(stats)
    console.print(
        f"worker {result.worker_id} stopped: {result.jobs_finished} job(s) finished, "
        f"peak RSS {result.peak_rss_mb:.0f} MB",
        highlight=False,
    )


def _print_outcome(outcome: FunnelOutcome) -> None:
    console.print(f"job {outcome.job_id} {outcome.status}: {outcome.stop_reason}", highlight=False)


@contextmanager
def _providers_factory(providers: Path | None, market: str | None) -> Iterator[ProvidersFactory]:
    """Fresh adapters for each job, from a providers file or from an emulated market of this worker."""
    if (providers is None) == (market is None):
        raise SpecError("give either --providers FILE or --market SCENARIO")
    if providers is not None:
        from imagefunnel.providers.config import build_provider, load_providers_file

        configs = load_providers_file(providers).providers  # a bad file fails now, not at the first job

        def from_file(_spec: JobSpec) -> list[Provider]:
            return [build_provider(config) for config in configs]

        yield from_file
        return
    from imagefunnel.cli.demo import market_providers
    from imagefunnel.market.server import MarketServer

    with MarketServer(str(market)) as server:
        yield lambda spec: market_providers(server, spec.model)


def submit_cmd(
    spec: Annotated[Path, typer.Argument(help="job spec YAML")],
    store: StoreUrl,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="how many copies of the job to queue")] = 1,
) -> None:
    """Queue the job in SPEC for the workers of a shared store; prints each job's id."""
    import uuid

    from imagefunnel.jobs import build_scorer
    from imagefunnel.spec import load_spec
    from imagefunnel.store import Store
    from imagefunnel.store.queue import JobQueue

    job = load_spec(spec)
    build_scorer(job)  # unknown dimensions in its rules, unreadable reference photos: refused now
    opened = Store(store)
    try:
        queue = JobQueue(opened)
        for _ in range(count):
            job_id = uuid.uuid4().hex
            queue.enqueue(job_id=job_id, name=job.name, spec_json=job.model_dump_json(), deliver=job.deliver)
            console.print(job_id, highlight=False)
    finally:
        opened.close()
    plural = "s" if count > 1 else ""
    err_console.print(f"queued {count} job{plural} '{job.name}' ({os.path.basename(spec)})", highlight=False)
