"""Funnel events, persisted in order: the SSE stream and webhooks are both read from the store.

:class:`RecordingObserver` is the worker's observer for one job: each funnel hook appends an event
row (its id is the SSE event id) and queues the webhooks of the job's tenant. :class:`EventHub`
wakes SSE streams of this process at once; streams of other processes find the rows on their next
poll, so a stream never depends on which process runs the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

from imagefunnel.errors import StoreError
from imagefunnel.funnel import CandidateScored, FunnelObserver, RequestFailed, WaveStarted
from imagefunnel.store.service_jobs import ServiceJobs
from imagefunnel.store.webhook_log import WebhookLog
from imagefunnel.workers import JobEnd

__all__ = ["TERMINAL_EVENTS", "EventHub", "EventRecorder", "RecordingObserver"]

log = logging.getLogger(__name__)

# The event that ends a job's stream, one per final status.
TERMINAL_EVENTS = frozenset({"delivered", "partial", "failed", "cancelled"})


class EventHub:
    """Per-job wake-ups for the streams of this process (call from the event loop)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    async def wait(self, job_id: str, *, within_s: float) -> None:
        """Return on the next event of ``job_id`` or after ``within_s`` seconds."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            async with asyncio.timeout(within_s):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]


@dataclass(frozen=True, slots=True)
class EventRecorder:
    """Writes a job's events and the webhook messages they cause."""

    jobs: ServiceJobs
    webhooks: WebhookLog
    hub: EventHub

    def record(self, job_id: str, tenant_id: str | None, type_: str, data: dict[str, object]) -> None:
        try:
            event_id = self.jobs.append_event(job_id, type_, data)
            if tenant_id is not None:
                payload = {"type": f"job.{type_}", "job_id": job_id, "event_id": event_id, "data": data}
                self.webhooks.enqueue(tenant_id, f"job.{type_}", payload, job_id=job_id)
        except StoreError as exc:
            # Progress reporting must never stop a job that is buying images.
            log.warning("job %s: event %s not recorded: %s", job_id, type_, exc)
            return
        self.hub.notify(job_id)

    def observer(self, job_id: str) -> RecordingObserver:
        return RecordingObserver(self, job_id, self.jobs.owner(job_id))

    async def job_ended(self, end: JobEnd) -> None:
        data: dict[str, object] = {
            "status": end.status,
            "stop_reason": end.stop_reason,
            "delivered_ids": list(end.delivered_ids),
        }
        if end.quote is not None:  # quoted vs actual; the quote itself is on GET /v1/jobs/{id}
            data["quote"] = end.quote.model_dump(mode="json", exclude={"quote", "requote"})
        await asyncio.to_thread(self.record, end.job_id, self.jobs.owner(end.job_id), end.status, data)


class RecordingObserver(FunnelObserver):
    def __init__(self, recorder: EventRecorder, job_id: str, tenant_id: str | None) -> None:
        self._recorder = recorder
        self._job_id = job_id
        self._tenant_id = tenant_id

    def _emit(self, type_: str, data: dict[str, object]) -> None:
        self._recorder.record(self._job_id, self._tenant_id, type_, data)

    def wave_started(self, event: WaveStarted) -> None:
        self._emit(
            "wave_started",
            {
                "wave": event.wave,
                "size": event.size,
                "needed": event.needed,
                "estimated_pass_rate": round(event.estimated_pass_rate, 4),
            },
        )

    def candidate_scored(self, event: CandidateScored) -> None:
        self._emit(
            "candidate_scored",
            {
                "candidate_id": event.candidate_id,
                "wave": event.wave,
                "provider": event.provider,
                "passed": event.passed,
                "reasons": list(event.reasons),
                "passed_total": event.passed_total,
                "generated_total": event.generated_total,
                "spent_usd": round(event.spent_usd, 6),
            },
        )

    def request_failed(self, event: RequestFailed) -> None:
        self._emit(
            "request_failed", {"request_id": event.request_id, "wave": event.wave, "error": event.error}
        )
