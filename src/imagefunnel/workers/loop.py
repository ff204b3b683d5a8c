"""The worker loop: claim a queued job, run it under a renewed lease, release it, repeat.

A :class:`JobWorker` runs up to ``settings.jobs`` jobs at once in its event loop. Each job runs as a
task next to a heartbeat that renews the job's lease every ``lease_s / 3``; when a renewal is refused
(the lease expired and another worker took the job) the task is cancelled at once, so two workers
never buy for the same job for longer than one heartbeat. A worker that dies simply stops renewing:
after ``lease_s`` another worker claims the job and resumes it from the store, where nothing bought
is bought twice.

Optional hooks, all generic: ``cancellations`` is asked on every heartbeat whether someone asked for
the job to stop (the job task is then cancelled, so in-flight provider requests are cancelled where
the protocol allows, and the job ends ``cancelled`` delivering the best of what had passed);
``on_end`` hears how each job this worker finished ended; :meth:`JobWorker.wake` cuts an idle
worker's poll short (a front end that has just queued a job).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from imagefunnel.errors import ImageFunnelError
from imagefunnel.funnel import FunnelObserver, FunnelOutcome
from imagefunnel.funnel.selection import Ranked, best_k
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.queue import Claim, JobQueue

__all__ = ["CancelCheck", "EndHook", "JobEnd", "JobWorker", "ProvidersFactory", "WorkerSettings"]

log = logging.getLogger(__name__)

# Fresh adapters for one job (the worker closes them when the job ends).
ProvidersFactory = Callable[[JobSpec], Sequence[Provider]]
ObserverFactory = Callable[[str], FunnelObserver]
# Has someone asked for this job to stop? Called from a thread (it may query a database).
CancelCheck = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How a job this worker held ended: delivered | partial | failed | cancelled."""

    job_id: str
    status: str
    stop_reason: str
    delivered_ids: tuple[int, ...]


EndHook = Callable[[JobEnd], Awaitable[None]]


class _Beat(Enum):
    """Why a heartbeat stopped: the job ended, the lease was lost, or the job was cancelled."""

    ENDED = "ended"
    LOST = "lost"
    CANCEL = "cancel"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """``jobs``: jobs run at once; ``lease_s``: how long a claim holds without renewal; ``poll_s``: how
    often an idle worker looks for work; ``cancel_poll_s``: how often a running job's cancel flag is
    looked at (only with a ``cancellations`` hook)."""

    worker_id: str = ""
    jobs: int = 2
    lease_s: float = 30.0
    poll_s: float = 0.5
    cancel_poll_s: float = 0.5


class JobWorker:
    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        providers: ProvidersFactory,
        settings: WorkerSettings | None = None,
        observers: ObserverFactory | None = None,
        cancellations: CancelCheck | None = None,
        on_end: EndHook | None = None,
    ) -> None:
        self._store = store
        self._queue = JobQueue(store)
        self._blobs = blobs
        self._providers = providers
        self._observers = observers
        self._cancellations = cancellations
        self._on_end = on_end
        self._wake = asyncio.Event()
        base = settings or WorkerSettings()
        self.settings = base if base.worker_id else _with_id(base, default_worker_id())
        self.finished: list[FunnelOutcome] = []

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    def wake(self) -> None:
        """Look for work now instead of at the end of the current idle poll (call from its loop)."""
        self._wake.set()

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
                await self._idle(stop)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _idle(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=self.settings.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            self._wake.clear()

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
        end: JobEnd | None = None
        try:
            outcome = await job
        except asyncio.CancelledError:
            why = beat.result() if beat.done() and not beat.cancelled() else None
            if why is _Beat.LOST:
                return  # the lease was lost: another worker holds the job now
            if why is not _Beat.CANCEL:
                # This worker is shutting down: hand the job straight to the next worker, then stop.
                await asyncio.to_thread(self._queue.requeue, claim.job_id, self.worker_id)
                raise
            end = await asyncio.to_thread(self._finish_cancelled, claim.job_id)
        except ImageFunnelError as exc:
            # A job that cannot run at all (bad spec, unreadable references) ends as failed, with why.
            log.warning("job %s failed: %s", claim.job_id, exc)
            await asyncio.to_thread(
                self._store.finish_job, claim.job_id, status="failed", stop_reason=str(exc), delivered=0
            )
            end = JobEnd(claim.job_id, "failed", str(exc), ())
        else:
            self.finished.append(outcome)
            end = JobEnd(outcome.job_id, outcome.status, outcome.stop_reason, outcome.delivered_ids)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        # Shielded: a shutdown arriving now must not leave a finished job holding a lease.
        await asyncio.shield(asyncio.to_thread(self._queue.release, claim.job_id, self.worker_id))
        if self._on_end is not None:
            await self._on_end(end)

    def _finish_cancelled(self, job_id: str) -> JobEnd:
        """End a cancelled job, delivering the best of what passed (it was paid for) up to K."""
        job = self._store.job(job_id)
        passed = [Ranked(c.id, c.quality) for c in self._store.candidates(job_id) if c.passed]
        chosen = [r.candidate_id for r in best_k(passed, job.deliver)]
        self._store.mark_delivered(chosen)
        reason = f"cancelled on request; delivered {len(chosen)} of {job.deliver} that had passed"
        self._store.finish_job(job_id, status="cancelled", stop_reason=reason, delivered=len(chosen))
        return JobEnd(job_id, "cancelled", reason, tuple(chosen))

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

    async def _heartbeat(self, claim: Claim, job: asyncio.Task[FunnelOutcome]) -> _Beat:
        """Renew the lease until the job ends; cancel the job if the lease is lost or a cancel was
        asked for (looked at every ``cancel_poll_s``), and say which."""
        renew_every = self.settings.lease_s / 3
        step = min(renew_every, self.settings.cancel_poll_s) if self._cancellations else renew_every
        since_renewal = 0.0
        while not job.done():
            await asyncio.sleep(step)
            since_renewal += step
            if self._cancellations is not None and await asyncio.to_thread(self._cancellations, claim.job_id):
                log.info("job %s: cancel requested", claim.job_id)
                job.cancel()
                return _Beat.CANCEL
            if since_renewal + 1e-9 < renew_every:
                continue
            since_renewal = 0.0
            held = await asyncio.to_thread(
                self._queue.renew, claim.job_id, self.worker_id, lease_s=self.settings.lease_s
            )
            if not held:
                log.warning("worker %s lost the lease of job %s", self.worker_id, claim.job_id)
                job.cancel()
                return _Beat.LOST
        return _Beat.ENDED


def _with_id(settings: WorkerSettings, worker_id: str) -> WorkerSettings:
    return dataclasses.replace(settings, worker_id=worker_id)
