"""The worker loop: claim a queued job, run it under a renewed lease, release it, repeat.

A :class:`JobWorker` runs up to ``settings.jobs`` jobs at once in its event loop. Each job runs as a
task while a heartbeat thread renews the job's lease every ``lease_s / 3``; when a renewal is refused
(the lease expired and another worker took the job) the task is cancelled at once, so two workers
never buy for the same job for longer than one heartbeat. A worker that dies simply stops renewing:
after ``lease_s`` another worker claims the job and resumes it from the store, where nothing bought
is bought twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagefunnel.errors import ImageFunnelError, StoreError
from imagefunnel.funnel import FunnelObserver, FunnelOutcome
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
from imagefunnel.routing.cooldowns import LocalCooldowns, SharedCooldowns
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.queue import Claim, JobQueue

__all__ = ["JobWorker", "ProvidersFactory", "WorkerSettings"]

log = logging.getLogger(__name__)

# Fresh adapters for one job (the worker closes them when the job ends).
ProvidersFactory = Callable[[JobSpec], Sequence[Provider]]
ObserverFactory = Callable[[str], FunnelObserver]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """``jobs``: jobs run at once; ``lease_s``: how long a claim holds without renewal; ``poll_s``: how
    often an idle worker looks for work."""

    worker_id: str = ""
    jobs: int = 2
    lease_s: float = 30.0
    poll_s: float = 0.5


class JobWorker:
    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        providers: ProvidersFactory,
        settings: WorkerSettings | None = None,
        observers: ObserverFactory | None = None,
        cooldowns: SharedCooldowns | None = None,
        executor_url: str | None = None,
    ) -> None:
        """``cooldowns``: provider cooldowns shared by this worker's jobs (default: in this process;
        a Redis one shares them with every worker); ``executor_url``: where jobs score (default:
        ``IMAGEFUNNEL_EXECUTOR``, else threads)."""
        self._store = store
        self._queue = JobQueue(store)
        self._blobs = blobs
        self._providers = providers
        self._observers = observers
        self.cooldowns = cooldowns if cooldowns is not None else LocalCooldowns()
        self._executor_url = executor_url
        base = settings or WorkerSettings()
        self.settings = base if base.worker_id else _with_id(base, default_worker_id())
        self.finished: list[FunnelOutcome] = []

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; jobs still running then are handed back."""
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                claim = None
                if len(running) < self.settings.jobs:
                    claim = await asyncio.to_thread(
                        self._queue.claim, self.worker_id, lease_s=self.settings.lease_s
                    )
                if claim is not None:
                    task = asyncio.create_task(self._run_claim(claim), name=f"job {claim.job_id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_s)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def run_one(self) -> FunnelOutcome | None:
        """Claim one job and run it to its end (None if nothing was queued): for tests and drains."""
        claim = await asyncio.to_thread(self._queue.claim, self.worker_id, lease_s=self.settings.lease_s)
        if claim is None:
            return None
        await self._run_claim(claim)
        return self.finished[-1] if self.finished else None

    async def _run_claim(self, claim: Claim) -> None:
        loop = asyncio.get_running_loop()
        job = asyncio.create_task(self._execute(claim))
        lease = _LeaseKeeper(
            self._queue,
            claim,
            lease_s=self.settings.lease_s,
            on_lost=lambda: loop.call_soon_threadsafe(job.cancel),
        )
        lease.start()
        try:
            outcome = await job
        except asyncio.CancelledError:
            await asyncio.to_thread(lease.stop)
            if lease.lost:
                return  # another worker holds the job now
            # This worker is shutting down: hand the job straight to the next worker, then stop.
            await asyncio.to_thread(self._queue.requeue, claim.job_id, self.worker_id)
            raise
        except ImageFunnelError as exc:
            await asyncio.to_thread(lease.stop)
            # A job that cannot run at all (bad spec, unreadable references) ends as failed, with why;
            # only by its holder, though: a worker that lost the job must not end it for the new one.
            log.warning("job %s failed: %s", claim.job_id, exc)
            await asyncio.to_thread(self._queue.fail, claim.job_id, self.worker_id, reason=str(exc))
        else:
            await asyncio.to_thread(lease.stop)
            self.finished.append(outcome)
        # Shielded: a shutdown arriving now must not leave a finished job holding a lease.
        await asyncio.shield(asyncio.to_thread(self._queue.release, claim.job_id, self.worker_id))

    async def _execute(self, claim: Claim) -> FunnelOutcome:
        spec = JobSpec.model_validate_json(claim.spec_json)
        providers = self._providers(spec)
        observer = self._observers(claim.job_id) if self._observers else None
        return await run_funnel_job(
            spec,
            providers,
            store=self._store,
            blobs=self._blobs,
            observer=observer,
            job_id=None if claim.resumed else claim.job_id,
            resume_job_id=claim.job_id if claim.resumed else None,
            executor_url=self._executor_url,
            cooldowns=self.cooldowns,
        )


class _LeaseKeeper:
    """Renews one claim's lease every ``lease_s / 3`` from a thread of its own until stopped.

    A thread, not a task of the event loop: the loop also runs the job (and competes for the GIL
    with scoring threads), and on a busy machine it can lag for seconds, which must not cost a live
    worker its job. When a renewal is refused (the lease expired and another worker took the job)
    it sets ``lost`` and calls ``on_lost`` (which cancels the job) at once; a renewal that fails
    (the database is unreachable) is retried on the next beat while the lease may still hold.
    """

    def __init__(
        self, queue: JobQueue, claim: Claim, *, lease_s: float, on_lost: Callable[[], object]
    ) -> None:
        self._queue = queue
        self._claim = claim
        self._lease_s = lease_s
        self._on_lost = on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {claim.job_id}", daemon=True)
        self.lost = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and wait for the thread (a renewal in progress finishes first)."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        claim = self._claim
        while not self._stopped.wait(self._lease_s / 3):
            try:
                held = self._queue.renew(claim.job_id, claim.worker_id, lease_s=self._lease_s)
            except StoreError as exc:
                log.warning("worker %s could not renew job %s: %s", claim.worker_id, claim.job_id, exc)
                continue
            if not held and not self._stopped.is_set():
                log.warning("worker %s lost the lease of job %s", claim.worker_id, claim.job_id)
                self.lost = True
                self._on_lost()
                return


def _with_id(settings: WorkerSettings, worker_id: str) -> WorkerSettings:
    return WorkerSettings(
        worker_id=worker_id, jobs=settings.jobs, lease_s=settings.lease_s, poll_s=settings.poll_s
    )
