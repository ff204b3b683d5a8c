"""The worker loop: claim a queued job, run it under a renewed lease, release it, repeat.

A :class:`JobWorker` runs up to ``settings.jobs`` jobs at once in its event loop. Each job runs as a
task next to a heartbeat that renews the job's lease every ``lease_s / 3``; when a renewal is refused
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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagefunnel.errors import ImageFunnelError
from imagefunnel.funnel import FunnelObserver, FunnelOutcome
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
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
    ) -> None:
        self._store = store
        self._queue = JobQueue(store)
        self._blobs = blobs
        self._providers = providers
        self._observers = observers
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
        job = asyncio.create_task(self._execute(claim))
        beat = asyncio.create_task(self._heartbeat(claim, job))
        try:
            outcome = await job
        except asyncio.CancelledError:
            if beat.done() and not beat.cancelled() and beat.result() is False:
                return  # the lease was lost: another worker holds the job now
            # This worker is shutting down: hand the job straight to the next worker, then stop.
            await asyncio.to_thread(self._queue.requeue, claim.job_id, self.worker_id)
            raise
        except ImageFunnelError as exc:
            # A job that cannot run at all (bad spec, unreadable references) ends as failed, with why.
            log.warning("job %s failed: %s", claim.job_id, exc)
            await asyncio.to_thread(
                self._store.finish_job, claim.job_id, status="failed", stop_reason=str(exc), delivered=0
            )
        else:
            self.finished.append(outcome)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
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
        )

    async def _heartbeat(self, claim: Claim, job: asyncio.Task[FunnelOutcome]) -> bool:
        """Renew the lease until the job ends; False (and the job cancelled) if the lease was lost."""
        interval = self.settings.lease_s / 3
        while not job.done():
            await asyncio.sleep(interval)
            held = await asyncio.to_thread(
                self._queue.renew, claim.job_id, self.worker_id, lease_s=self.settings.lease_s
            )
            if not held:
                log.warning("worker %s lost the lease of job %s", self.worker_id, claim.job_id)
                job.cancel()
                return False
        return True


def _with_id(settings: WorkerSettings, worker_id: str) -> WorkerSettings:
    return WorkerSettings(
        worker_id=worker_id, jobs=settings.jobs, lease_s=settings.lease_s, poll_s=settings.poll_s
    )
