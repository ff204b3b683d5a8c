"""Scoring on Ray: a pool of scoring actors on a local Ray instance or on a Ray cluster.

``IMAGEFUNNEL_EXECUTOR=ray`` starts (or joins) a Ray instance on this machine; ``ray://head:10001``
connects to a cluster through Ray Client (``pip install 'imagefunnel[ray]'`` brings both). The pool
is ``workers`` actors (default: one per CPU of the cluster), spread over the cluster's nodes: an
actor is a long-lived worker process, so the models a scorer loads are loaded once per actor (by
:func:`~imagefunnel.executors.processes.worker_scorer`, keyed by the job's :class:`ScorerConfig`)
and reused for every candidate sent to it. Tasks go to the actor with the fewest in flight. Each
actor runs one task at a time, so ``workers`` is the scoring parallelism.

Actors reserve no CPU in Ray's accounting, like the processes of a local process pool: a job's pool
never waits for another job's to end (jobs running at once on a small cluster share its cores,
they do not queue for them).

Ray is joined once per process and left running when a pool shuts down (only the pool's actors are
killed): joining costs seconds, and the process may run many jobs. On a cluster, the nodes need
imagefunnel installed at the same version (the actors import it to score).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from imagefunnel.errors import ExecutorError, ScoringWorkerError
from imagefunnel.executors.config import ExecutorChoice

__all__ = ["RayExecutor", "connect_ray", "ray_executor"]

P = ParamSpec("P")
T = TypeVar("T")

# Enough for the candidates in flight (megabytes each); Ray's default reserves 30% of memory.
OBJECT_STORE_BYTES = 256 * 1024**2


def _ray() -> Any:
    # Usage statistics are off unless the user asked for them; set before Ray is imported.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError("executor ray: Ray is not installed (pip install 'imagefunnel[ray]')") from exc
    return ray


def connect_ray(address: str | None = None) -> Any:
    """Join Ray once per process: ``address`` (``ray://host:port``) or a local instance; returns ``ray``.

    If this process is already connected (a test session, the caller's own ``ray.init``), that
    connection is used as it is.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    try:
        if address is None:
            ray.init(include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise ExecutorError(f"executor ray: cannot connect to {where}: {exc}") from exc
    return ray


class _Actor:
    """One scoring worker: runs the functions it is sent (module-level, importable ones)."""

    def run(self, fn: Callable[..., object], *args: object) -> object:
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor(Executor):
    """``workers`` scoring actors; ``submit`` returns a standard :class:`~concurrent.futures.Future`."""

    def __init__(self, ray: Any, *, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be ≥ 1")
        self._ray = ray
        remote = ray.remote(num_cpus=0, max_restarts=0)(_Actor).options(scheduling_strategy="SPREAD")
        self._actors = [remote.remote() for _ in range(workers)]
        self._in_flight = [0] * workers
        self._lock = threading.Lock()
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._actors)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if kwargs:
            raise TypeError("RayExecutor.submit takes positional arguments only")
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a RayExecutor that was shut down")
            index = min(range(len(self._actors)), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
            ref = self._actors[index].run.remote(fn, *args)
        out: Future[T] = Future()
        ref.future().add_done_callback(lambda done: self._settle(index, done, out))
        return out

    def _settle(self, index: int, done: Future[Any], out: Future[T]) -> None:
        with self._lock:
            self._in_flight[index] -= 1
        error = done.exception()
        if error is None:
            out.set_result(done.result())
        elif isinstance(error, self._ray.exceptions.RayActorError | self._ray.exceptions.WorkerCrashedError):
            out.set_exception(ScoringWorkerError(f"a Ray scoring worker died: {error}"))
        elif isinstance(error, self._ray.exceptions.RayTaskError):
            # The task's own exception (a scorer that cannot be built, a bug) is its cause.
            cause = getattr(error, "cause", None) or error
            out.set_exception(ScoringWorkerError(f"scoring failed on a Ray worker: {cause!r}"))
        else:
            out.set_exception(error)

    def warm_up(self) -> list[int]:
        """Wait until every actor has started; returns their process ids."""
        return [int(pid) for pid in self._ray.get([actor.pid.remote() for actor in self._actors])]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for actor in self._actors:
            # no_restart: a killed actor stays dead; Ray itself keeps running for the next pool.
            self._ray.kill(actor, no_restart=True)


def ray_executor(choice: ExecutorChoice) -> RayExecutor:
    """The pool ``choice`` names: ``choice.workers`` actors, or one per CPU Ray reports (at least 1)."""
    ray = connect_ray(choice.address)
    workers = choice.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    return RayExecutor(ray, workers=workers)
