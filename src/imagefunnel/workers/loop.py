"""The worker loop: claim a queued job, run it under a renewed lease, release it, repeat.

A :class:`JobWorker` runs up to ``settings.jobs`` jobs at once in its event loop. Each job runs as a
task while a thread renews the job's lease every ``lease_s / 3`` (see :mod:`.lease`); when a
renewal is refused (the lease expired and another worker took the job) the task is cancelled at
once, so two workers never buy for the same job for longer than one heartbeat. A worker that dies
simply stops renewing: after ``lease_s`` another worker claims the job and resumes it from the
store, where nothing bought is bought twice.

Optional hooks, all generic: ``cancellations`` is asked every ``cancel_poll_s`` whether someone asked for
the job to stop (the job task is then cancelled, so in-flight provider requests are cancelled where
the protocol allows, and the job ends ``cancelled`` delivering the best of what had passed);
``on_end`` hears how each job this worker finished ended; :meth:`JobWorker.wake` cuts an idle
worker's poll short (a front end that has just queued a job).

Before a job buys anything, its first claim quotes it (:func:`imagefunnel.quoting.quote_job`, from
the pass rates in the shared store and this worker's providers) and keeps the quote with the job
(:mod:`imagefunnel.store.job_quotes`); a re-claim keeps that first quote. A spec with a
``confidence`` its budget cannot reach fails there, with the budget it needs, having bought nothing.
When the job ends its holder records how the quote held (:func:`imagefunnel.quote_check.check_quote`).
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
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy.orm import Session

from imagefunnel.errors import ImageFunnelError, NoProviderAvailable, SpecError
from imagefunnel.forecast import refusal
from imagefunnel.funnel import FunnelObserver, FunnelOutcome
from imagefunnel.funnel.result import JobResult, load_result
from imagefunnel.funnel.selection import Ranked, best_k
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
from imagefunnel.quote_check import QuoteCheck, QuoteRecord, check_quote
from imagefunnel.quoting import quote_job, store_pass_rates, store_prices, store_score_s
from imagefunnel.routing.cooldowns import LocalCooldowns, SharedCooldowns
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.job_quotes import JobQuotes, StoredQuote
from imagefunnel.store.queue import Claim, JobQueue
from imagefunnel.store.repository import JobEnding
from imagefunnel.workers.lease import LeaseKeeper

__all__ = [
    "CancelCheck",
    "EndHook",
    "JobEnd",
    "JobWorker",
    "ProvidersFactory",
    "SpecResolver",
    "WorkerSettings",
]

log = logging.getLogger(__name__)

# Fresh adapters for one job (the worker closes them when the job ends).
ProvidersFactory = Callable[[JobSpec], Sequence[Provider]]
ObserverFactory = Callable[[str], FunnelObserver]
# Has someone asked for this job to stop? Called from a thread (it may query a database).
CancelCheck = Callable[[str], bool]
# The spec a job runs with, from the one it was stored with (e.g. uploads it names made readable
# images); called from a thread with the job's id. Raises SpecError when the job cannot run.
SpecResolver = Callable[[str, JobSpec], JobSpec]


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How a job this worker held ended: delivered | partial | failed | cancelled; ``quote``: how
    its quote held (None: not quoted, or it ended before it ran)."""

    job_id: str
    status: str
    stop_reason: str
    delivered_ids: tuple[int, ...]
    quote: QuoteCheck | None = None


EndHook = Callable[[JobEnd], Awaitable[None]]


class _Watch(Enum):
    """Why the cancel watch stopped: the job ended, or a cancel was asked for."""

    ENDED = "ended"
    CANCEL = "cancel"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """``jobs``: jobs run at once; ``lease_s``: how long a claim holds without renewal; ``poll_s``: how
    often an idle worker looks for work; ``cancel_poll_s``: how often a running job's cancel flag is
    looked at (only with a ``cancellations`` hook); ``quote``: quote each job as it is first claimed
    (about a second for a 60-image job; a spec with a ``confidence`` is quoted regardless)."""

    worker_id: str = ""
    jobs: int = 2
    lease_s: float = 30.0
    poll_s: float = 0.5
    cancel_poll_s: float = 0.5
    quote: bool = True


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
        cooldowns: SharedCooldowns | None = None,
        executor_url: str | None = None,
        resolve_spec: SpecResolver | None = None,
    ) -> None:
        """``cooldowns``: provider cooldowns shared by this worker's jobs (default: in this process;
        a Redis one shares them with every worker); ``executor_url``: where jobs score (default:
        ``IMAGEFUNNEL_EXECUTOR``, else threads); ``resolve_spec``: turns a stored spec into the one
        that runs (default: as stored)."""
        self._store = store
        self._queue = JobQueue(store)
        self._quotes = JobQuotes(store)
        self._blobs = blobs
        self._providers = providers
        self._observers = observers
        self._cancellations = cancellations
        self._on_end = on_end
        self._wake = asyncio.Event()
        self.cooldowns = cooldowns if cooldowns is not None else LocalCooldowns()
        self._executor_url = executor_url
        self._resolve_spec = resolve_spec
        base = settings or WorkerSettings()
        self.settings = base if base.worker_id else _with_id(base, default_worker_id())
        self.finished: list[FunnelOutcome] = []
        # Claims being run, from the claim to the last word on them: a job whose status is already
        # final in the store may still be reporting here (``finished``, its quote check, its end).
        self.active = 0

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    def wake(self) -> None:
        """Look for work now instead of at the end of the current idle poll (call from its loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; jobs still running then are handed back."""
        running: set[asyncio.Task[None]] = set()
        held: set[LeaseKeeper] = set()
        try:
            while not stop.is_set():
                lease = None
                if len(running) < self.settings.jobs:
                    lease = await asyncio.to_thread(self._claim)
                if lease is not None:
                    held.add(lease)
                    task = asyncio.create_task(self._run_claim(lease), name=f"job {lease.claim.job_id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                    continue
                await self._idle(stop)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            # A task cancelled before it ever ran never stopped its lease: hand those jobs back too.
            for lease in held:
                if not lease.stopped:
                    await asyncio.to_thread(self._hand_back, lease)

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
        lease = await asyncio.to_thread(self._claim)
        if lease is None:
            return None
        await self._run_claim(lease)
        return self.finished[-1] if self.finished else None

    def _claim(self) -> LeaseKeeper | None:
        """Claim a job and start renewing its lease at once, here: the event loop may be busy."""
        claim = self._queue.claim(self.worker_id, lease_s=self.settings.lease_s)
        if claim is None:
            return None
        lease = LeaseKeeper(self._queue, claim, lease_s=self.settings.lease_s)
        lease.start()
        return lease

    def _hand_back(self, lease: LeaseKeeper) -> None:
        lease.stop()
        if not lease.lost:
            self._queue.requeue(lease.claim.job_id, self.worker_id)

    async def _run_claim(self, lease: LeaseKeeper) -> None:
        self.active += 1
        try:
            await self._run_claim_once(lease)
        finally:
            self.active -= 1

    async def _run_claim_once(self, lease: LeaseKeeper) -> None:
        with self._store.finishing(lease.claim.job_id, self._check_on_finish):
            await self._run_claim_held(lease)

    async def _run_claim_held(self, lease: LeaseKeeper) -> None:
        claim = lease.claim
        loop = asyncio.get_running_loop()
        job = asyncio.create_task(self._execute(claim))
        lease.on_lost(lambda: loop.call_soon_threadsafe(job.cancel))
        watch = asyncio.create_task(self._watch_cancel(claim, job))
        end: JobEnd | None = None
        try:
            outcome = await job
        except asyncio.CancelledError:
            why = watch.result() if watch.done() and not watch.cancelled() else None
            if why is not _Watch.CANCEL:
                # Lost lease: another worker holds the job now. Otherwise this worker is shutting
                # down: hand the job straight to the next worker, then stop.
                await asyncio.to_thread(self._hand_back, lease)
                if lease.lost:
                    return
                raise
            await asyncio.to_thread(lease.stop)
            end = await asyncio.to_thread(self._finish_cancelled, claim.job_id)
        except ImageFunnelError as exc:
            await asyncio.to_thread(lease.stop)
            # A job that cannot run at all (bad spec, unreadable references) ends as failed, with why;
            # only by its holder, though: a worker that lost the job must not end it for the new one.
            log.warning("job %s failed: %s", claim.job_id, exc)
            await asyncio.to_thread(self._queue.fail, claim.job_id, self.worker_id, reason=str(exc))
            end = JobEnd(claim.job_id, "failed", str(exc), ())
        else:
            await asyncio.to_thread(lease.stop)
            self.finished.append(outcome)
            check = await asyncio.to_thread(self._check_quote, claim.job_id)
            end = JobEnd(outcome.job_id, outcome.status, outcome.stop_reason, outcome.delivered_ids, check)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
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
        return JobEnd(job_id, "cancelled", reason, tuple(chosen), self._check_quote(job_id))

    def _check_quote(self, job_id: str) -> QuoteCheck | None:
        """The ended job's quote check (None: it was not quoted): the one written as it ended
        (:meth:`_check_on_finish`), else made and kept now."""
        stored = self._quotes.get(job_id)
        if stored is None:
            return None
        if stored.check is not None:
            return stored.check
        job = self._store.job(job_id)
        result = load_result(self._store, self._blobs, job_id)
        check = _held(stored, result, end=job.finished_at or stored.quoted_at, claims=job.claims)
        self._quotes.set_check(job_id, check)
        return check

    def _check_on_finish(self, ending: JobEnding) -> Callable[[Session], None] | None:
        """The quote check written with the job's final status (``Store.finishing``), so that no
        reader sees the job ended and its check still missing. The result is the one about to be
        final: what was bought and delivered is recorded by then; the status comes with the ending."""
        try:
            stored = self._quotes.get(ending.job_id)
            if stored is None:
                return None
            job = self._store.job(ending.job_id)
            ended = {
                "status": ending.status,
                "stop_reason": ending.stop_reason,
                "delivered": ending.delivered,
            }
            result = load_result(self._store, self._blobs, ending.job_id).model_copy(update=ended)
            check = _held(stored, result, end=ending.finished_at, claims=job.claims)
        except (ImageFunnelError, ValueError) as exc:
            # The job must end all the same: its check is then made after it ended (_check_quote).
            log.warning("job %s: its quote check could not be made as it ended: %s", ending.job_id, exc)
            return None
        return JobQuotes.check_writer(ending.job_id, check)

    async def _execute(self, claim: Claim) -> FunnelOutcome:
        spec = JobSpec.model_validate_json(claim.spec_json)
        if self._resolve_spec is not None:
            spec = await asyncio.to_thread(self._resolve_spec, claim.job_id, spec)
        await self._quote(claim.job_id, spec)
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

    async def _quote(self, job_id: str, spec: JobSpec) -> StoredQuote | None:
        """The job's quote: the one it was first given, else one made now (before anything is bought).

        A spec with a ``confidence`` its budget cannot reach is refused (:class:`SpecError`, with the
        budget it needs), and so is one when nothing can be quoted. Without a ``confidence``, a job
        nothing can be quoted for runs unquoted, and finds out for itself.
        """
        stored = await asyncio.to_thread(self._quotes.get, job_id)
        if stored is None and (self.settings.quote or spec.confidence is not None):
            try:
                book = await asyncio.to_thread(store_pass_rates, self._store.engine)
                score_s = await asyncio.to_thread(store_score_s, self._store.engine, spec)
                prices = await asyncio.to_thread(store_prices, self._store.engine)
                fresh = await quote_job(
                    spec, self._providers(spec), pass_rates=book, score_s=score_s, prices=prices
                )
            except NoProviderAvailable:
                if spec.confidence is not None:
                    raise
                log.info("job %s: nothing to quote it on; it runs unquoted", job_id)
                return None
            stored = await asyncio.to_thread(
                self._quotes.keep, job_id, QuoteRecord(quote=fresh, source="run")
            )
        if stored is not None and spec.confidence is not None:
            why = refusal(stored.record.quote)
            if why is not None:
                raise SpecError(f"confidence: {why}", field="confidence")
        return stored

    async def _watch_cancel(self, claim: Claim, job: asyncio.Task[FunnelOutcome]) -> _Watch:
        """Until the job ends, ask every ``cancel_poll_s`` whether it should stop; cancel it if so."""
        if self._cancellations is None:
            await asyncio.wait([job])
            return _Watch.ENDED
        while not job.done():
            await asyncio.sleep(self.settings.cancel_poll_s)
            if await asyncio.to_thread(self._cancellations, claim.job_id):
                log.info("job %s: cancel requested", claim.job_id)
                job.cancel()
                return _Watch.CANCEL
        return _Watch.ENDED


def _with_id(settings: WorkerSettings, worker_id: str) -> WorkerSettings:
    return dataclasses.replace(settings, worker_id=worker_id)


def _held(stored: StoredQuote, result: JobResult, *, end: datetime, claims: int) -> QuoteCheck:
    """Hold an ended job to its quote. Its wall time runs from the quote (made as it was first
    claimed) to its end, so a job that was re-claimed counts the time its first holder had it and
    the wait for the next one."""
    note = "since its first claim" + (", time between claims included" if claims > 1 else "")
    wall_s = (_aware(end) - _aware(stored.quoted_at)).total_seconds()
    return check_quote(stored.record, result, wall_s=max(0.0, wall_s), wall_note=note)


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive UTC datetimes, PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
