"""Keeping a claimed job: its lease is renewed from a thread of its own, from the moment of the claim.

A thread, not a task of the worker's event loop: the loop also runs the jobs (and competes for the
GIL with scoring threads), and on a busy machine it can lag for seconds, which must not cost a live
worker its job. The thread starts in the claiming thread, right after the claim, so even a lease
claimed while the loop is stuck is renewed in time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from imagefunnel.errors import StoreError
from imagefunnel.store.queue import Claim, JobQueue

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews ``claim``'s lease every ``lease_s / 3`` until :meth:`stop`.

    When a renewal is refused (the lease expired and another worker took the job) it sets ``lost``
    and calls the callback given to :meth:`on_lost` (which cancels the job) at once, or as soon as
    one is given. A renewal that fails (the database is unreachable) is retried on the next beat,
    while the lease may still hold.
    """

    def __init__(self, queue: JobQueue, claim: Claim, *, lease_s: float) -> None:
        self.claim = claim
        self._queue = queue
        self._lease_s = lease_s
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._callback: Callable[[], object] | None = None
        self._thread = threading.Thread(target=self._run, name=f"lease {claim.job_id}", daemon=True)
        self.lost = False

    def start(self) -> None:
        self._thread.start()

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (from the renewing thread) when the lease is lost; now, if it already is."""
        with self._lock:
            self._callback = callback
            lost = self.lost
        if lost:
            callback()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Stop renewing and wait for the thread (a renewal in progress finishes first)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        claim = self.claim
        while not self._stopped.wait(self._lease_s / 3):
            try:
                held = self._queue.renew(claim.job_id, claim.worker_id, lease_s=self._lease_s)
            except StoreError as exc:
                log.warning("worker %s could not renew job %s: %s", claim.worker_id, claim.job_id, exc)
                continue
            if held or self._stopped.is_set():
                continue
            log.warning("worker %s lost the lease of job %s", claim.worker_id, claim.job_id)
            with self._lock:
                self.lost = True
                callback = self._callback
            if callback is not None:
                callback()
            return
