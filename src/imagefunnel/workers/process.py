"""One worker process: a :class:`JobWorker` on a shared store until it is told to stop.

SIGTERM or SIGINT stops it cleanly: jobs still running go straight back to the queue for another
worker. A SIGKILL (or a crash) cannot be caught: that worker's jobs wait for their leases to expire,
then another worker claims and resumes them. With ``until_done`` the worker also stops once no job
is left anywhere (none queued, none held by any worker), which is what benchmarks and drains want.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from imagefunnel.funnel import FunnelOutcome
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers.loop import JobWorker

__all__ = ["WorkerStats", "serve_worker"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What a worker process did, for its operator and for the load benchmark."""

    worker_id: str
    jobs_finished: int
    peak_rss_mb: float

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")


def peak_rss_mb() -> float:
    """This process's peak resident memory (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


async def serve_worker(
    worker: JobWorker,
    queue: JobQueue,
    *,
    until_done: bool = False,
    on_finished: Callable[[FunnelOutcome], None] | None = None,
) -> WorkerStats:
    """Run ``worker`` until SIGTERM/SIGINT (or, with ``until_done``, until no job is left)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    reporter = _Reporter(worker, on_finished)
    watch = asyncio.create_task(_watch(worker, queue, stop, reporter, until_done=until_done))
    try:
        await worker.run(stop)
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    reporter.flush()
    return WorkerStats(worker.worker_id, len(worker.finished), round(peak_rss_mb(), 1))


@dataclass(slots=True)
class _Reporter:
    """Hands each finished job to ``on_finished`` once, in the order they finished."""

    worker: JobWorker
    on_finished: Callable[[FunnelOutcome], None] | None
    seen: int = 0

    def flush(self) -> None:
        finished = self.worker.finished
        if self.on_finished is not None:
            for outcome in finished[self.seen :]:
                self.on_finished(outcome)
        self.seen = len(finished)


async def _watch(
    worker: JobWorker, queue: JobQueue, stop: asyncio.Event, reporter: _Reporter, *, until_done: bool
) -> None:
    """Report jobs as they finish; with ``until_done``, stop the worker once none is left anywhere."""
    while not stop.is_set():
        await asyncio.sleep(worker.settings.poll_s)
        reporter.flush()
        # Not while a claim is still ending here: its job is final in the store a moment before the
        # worker has recorded and reported it, and stopping now would cancel that.
        if until_done and worker.active == 0 and await asyncio.to_thread(queue.unfinished) == 0:
            stop.set()
