"""Everything one service process runs besides the HTTP routes: the store and its repositories,
worker tasks claiming jobs, the evaluation runner, webhook delivery and the provider monitor.

:meth:`ServiceRuntime.start` first makes interrupted work claimable again (jobs and evaluations held
by a process of this host that is gone), then starts the tasks; jobs whose lease ran out are
re-claimed by the workers anyway. :meth:`ServiceRuntime.stop` hands running jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagefunnel.providers.base import Provider
from imagefunnel.service.auth import TokenBuckets
from imagefunnel.service.events import EventHub, EventRecorder
from imagefunnel.service.monitor import ProviderMonitor
from imagefunnel.service.references import resolve_uploads
from imagefunnel.service.scoring import EvaluationRunner, ScorerCache
from imagefunnel.service.settings import ServiceSettings
from imagefunnel.service.webhooks import WebhookDispatcher
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.evaluations import EvaluationStore
from imagefunnel.store.job_quotes import JobQuotes
from imagefunnel.store.provider_samples import ProviderSamples
from imagefunnel.store.service_jobs import ServiceJobs
from imagefunnel.store.tenancy import Tenancy
from imagefunnel.store.uploads import Uploads
from imagefunnel.store.webhook_log import WebhookLog
from imagefunnel.workers import (
    JobEnd,
    JobWorker,
    ProvidersFactory,
    WorkerSettings,
    owner_is_dead_here,
    release_dead_local_leases,
)
from imagefunnel.workers.loop import default_worker_id

__all__ = ["ServiceRuntime"]

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    store: Store
    blobs: BlobStore
    providers: ProvidersFactory
    catalog: Sequence[Provider] = ()
    tenancy: Tenancy = field(init=False)
    jobs: ServiceJobs = field(init=False)
    quotes: JobQuotes = field(init=False)
    uploads: Uploads = field(init=False)
    evaluations: EvaluationStore = field(init=False)
    webhooks: WebhookLog = field(init=False)
    samples: ProviderSamples = field(init=False)
    hub: EventHub = field(init=False)
    recorder: EventRecorder = field(init=False)
    limiter: TokenBuckets = field(init=False)
    scorers: ScorerCache = field(init=False)
    monitor: ProviderMonitor = field(init=False)
    dispatcher: WebhookDispatcher = field(init=False)
    workers: list[JobWorker] = field(default_factory=list, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    @classmethod
    def open(
        cls, settings: ServiceSettings, *, providers: ProvidersFactory, catalog: Sequence[Provider] = ()
    ) -> ServiceRuntime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.store_url)
        return cls(settings, store, BlobStore(settings.data_dir / "blobs"), providers, catalog)

    def __post_init__(self) -> None:
        s = self.settings
        self.tenancy = Tenancy(self.store)
        self.jobs = ServiceJobs(self.store)
        self.quotes = JobQuotes(self.store)
        self.uploads = Uploads(self.store)
        self.evaluations = EvaluationStore(self.store)
        self.webhooks = WebhookLog(self.store)
        self.samples = ProviderSamples(self.store)
        self.hub = EventHub()
        self.recorder = EventRecorder(self.jobs, self.webhooks, self.hub)
        self.limiter = TokenBuckets(rate_per_s=s.rate_per_s, burst=s.rate_burst)
        self.scorers = ScorerCache()
        self.monitor = ProviderMonitor(self.store, self.catalog, self.samples)
        self.dispatcher = WebhookDispatcher(
            self.webhooks,
            attempts=s.webhook_attempts,
            backoff_s=s.webhook_backoff_s,
            backoff_max_s=s.webhook_backoff_max_s,
            timeout_s=s.webhook_timeout_s,
            allow_private=s.private_webhooks_allowed,
        )

    def _worker(self) -> JobWorker:
        s = self.settings
        return JobWorker(
            store=self.store,
            blobs=self.blobs,
            providers=self.providers,
            settings=WorkerSettings(
                jobs=s.jobs_per_worker,
                lease_s=s.lease_s,
                poll_s=s.poll_s,
                cancel_poll_s=s.cancel_poll_s,
                quote=s.quote_jobs,
            ),
            observers=self.recorder.observer,
            cancellations=self.jobs.cancel_requested,
            on_end=self._job_ended,
            resolve_spec=self._resolve_spec,
        )

    def _resolve_spec(self, job_id: str, spec: JobSpec) -> JobSpec:
        """The uploads a job's spec names, as the blobs that hold them (owned by the job's tenant)."""
        return resolve_uploads(spec, self.jobs.owner(job_id), self.uploads, self.blobs)

    async def _job_ended(self, end: JobEnd) -> None:
        await self.recorder.job_ended(end)

    def wake_workers(self) -> None:
        for worker in self.workers:
            worker.wake()

    async def start(self) -> None:
        resumed = await asyncio.to_thread(release_dead_local_leases, self.store)
        requeued = await asyncio.to_thread(self.evaluations.requeue, owner_is_dead_here)
        if resumed or requeued:
            log.info("resuming %d interrupted jobs and %d evaluations", len(resumed), requeued)
        s = self.settings
        self.workers = [self._worker() for _ in range(s.workers)]
        runner = EvaluationRunner(
            self.evaluations,
            self.blobs,
            self.uploads,
            self.scorers,
            self.webhooks,
            worker_id=default_worker_id(),
        )
        coroutines: list[Coroutine[Any, Any, None]] = [w.run(self._stop) for w in self.workers]
        if s.workers:
            coroutines.append(runner.run(self._stop, poll_s=s.poll_s))
        coroutines.append(self.dispatcher.run(self._stop, poll_s=s.webhook_poll_s))
        if self.catalog:
            coroutines.append(self.monitor.run(self._stop, every_s=s.provider_sample_s))
        self._tasks = [asyncio.create_task(c) for c in coroutines]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.dispatcher.aclose()
        await self.monitor.aclose()
        self.store.close()
