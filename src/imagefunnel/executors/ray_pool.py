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
killed): joining costs seconds, and the process may run many jobs. One process joins one Ray: asking
it for another address is an ExecutorError, never a silent fallback to the one it has.

On a cluster, every node needs imagefunnel at this process's version with the extras the job's
dimensions need (the actors import it to score: nothing is shipped with the job), and the same Ray
and Python versions (Ray Client refuses others). Joining a cluster first checks, within
:data:`CONNECT_TIMEOUT_S`, that a Ray Client server answers at the address and takes this process's
authentication token where it wants one (Ray Client alone would retry for 30 s and then say only
"connection timeout"), then that the cluster's imagefunnel is this one. A cluster that goes away
under a pool fails its tasks with ScoringWorkerError once Ray Client's reconnection grace period
(30 s by default) is over, and the pool makes no Ray call after that: one would start a local
instance (Ray's auto-init) and score here instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from imagefunnel.errors import ExecutorError, ScoringWorkerError
from imagefunnel.executors.config import ExecutorChoice

__all__ = ["RayExecutor", "connect_ray", "ray_executor"]

P = ParamSpec("P")
T = TypeVar("T")

# Enough for the candidates in flight (megabytes each); Ray's default reserves 30% of memory.
OBJECT_STORE_BYTES = 256 * 1024**2
# How long joining a cluster may take to find a Ray Client server at its address: one that answers
# does so in well under a second; Ray Client's own retries would take 30 s to give up.
CONNECT_TIMEOUT_S = 10.0
# How long the cluster may take to run the version check (it starts a worker process on a node).
CHECK_TIMEOUT_S = 60.0
# Tries of Ray Client's connect when the head fails to start this client's server (a new one each).
CLIENT_INIT_TRIES = 3
LOCAL = "a local instance"

_join_lock = threading.Lock()  # jobs of one worker may open their pools at once
_joined: str | None = None  # what connect_ray joined (a ray:// address or LOCAL); None: not joined by us


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
    connection is used as it is, unless it cannot be the one asked for (a local instance when a
    cluster is asked for, or another address than the one this function joined): ExecutorError.
    """
    global _joined
    ray = _ray()
    wanted = address or LOCAL
    with _join_lock:
        if ray.is_initialized():
            on_client = bool(ray.util.client.ray.is_connected())
            if (_joined is None and (address is None or on_client)) or _joined == wanted:
                return ray
            have = _joined or ("a Ray cluster" if on_client else LOCAL)
            raise ExecutorError(
                f"executor {address or 'ray'}: this process already scores on {have}; "
                "one process joins one Ray (run another process for the other)"
            )
        if address is not None:
            _reach(address)
        try:
            with warnings.catch_warnings():
                # Ray Client warns about security groups when it times out; the error says it all.
                warnings.simplefilter("ignore", UserWarning)
                if address is None:
                    ray.init(
                        include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False
                    )
                else:
                    _client_init(ray, address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"executor ray: cannot connect to {wanted}: {_last_line(exc)}") from exc
        if address is not None:
            try:
                _check_cluster(ray, address)
            except ExecutorError:
                ray.shutdown()  # so that the next job checks again instead of scoring there
                raise
        _joined = wanted
    return ray


def _client_init(ray: Any, address: str) -> None:
    """``ray.init`` through Ray Client, tried up to CLIENT_INIT_TRIES times when the head's
    per-client server dies while starting (the head forks it from a process busy in gRPC; on two
    busy cores about one first connection in four to a fresh head died so, of SIGSEGV)."""
    for attempt in range(1, CLIENT_INIT_TRIES + 1):
        try:
            with _quiet("ray.client_builder"):  # it logs the init arguments it forwards
                ray.init(address=address, log_to_driver=False)
            return
        except ConnectionAbortedError as exc:  # what Ray Client raises for a failure the head reports
            if attempt == CLIENT_INIT_TRIES or "Starting Ray client server failed" not in str(exc):
                raise


def _last_line(error: BaseException) -> str:
    """The last line of an error's text: Ray's errors may carry a traceback from the cluster above it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Only warnings and errors from ``logger_name`` for a while."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reach(address: str) -> None:
    """ExecutorError within CONNECT_TIMEOUT_S unless a Ray Client server answers at ``address``
    and accepts this process (its token, where the cluster wants one)."""
    parts = urlsplit(address)
    host, port = parts.hostname or "", parts.port or 10001
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror as exc:
        raise ExecutorError(f"executor {address}: unknown host {host!r} ({exc.strerror})") from None
    except TimeoutError:
        raise ExecutorError(
            f"executor {address}: no answer from {host}:{port} in {CONNECT_TIMEOUT_S:g} s "
            "(is the head node's Ray Client port reachable from here?)"
        ) from None
    except OSError as exc:
        raise ExecutorError(
            f"executor {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); "
            "is Ray running there with its client server on that port?"
        ) from None
    _ping(address, f"{host}:{port}", max(0.1, deadline - time.monotonic()))


def _ping(address: str, target: str, timeout_s: float) -> None:
    """One Ray Client PING, as Ray Client sends it (with this process's token when token
    authentication is on here), so that a cluster that refuses it is told apart from one that is
    not there: Ray Client itself retries either for 30 s and then says "connection timeout"."""
    try:
        import grpc  # Ray Client's transport (ray[client]); without it ray.init says what to install

        # Ray's own channel factory adds the token; its generated (untyped) stubs speak the protocol.
        from ray._private.grpc_utils import init_grpc_channel

        messages = importlib.import_module("ray.core.generated.ray_client_pb2")
        stubs = importlib.import_module("ray.core.generated.ray_client_pb2_grpc")
    except ImportError:  # another Ray layout: leave the checking to ray.init
        return
    channel = init_grpc_channel(target, asynchronous=False)
    try:
        stubs.RayletDriverStub(channel).ClusterInfo(
            messages.ClusterInfoRequest(type=messages.ClusterInfoType.PING),
            timeout=timeout_s,
            wait_for_ready=True,
        )
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
                why = "the cluster refused this process's authentication token (it is not the head's)"
            else:
                why = (
                    "the cluster requires an authentication token: set RAY_AUTH_MODE=token here, with "
                    "the head's token (`ray get-auth-token` there) in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                    "or ~/.ray/auth_token"
                )
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            why = f"{target} accepts connections but is not a Ray Client server (no gRPC answer in {CONNECT_TIMEOUT_S:g} s)"
        else:
            why = f"{target} is not a Ray Client server ({code.name}: {exc.details()})"
        raise ExecutorError(f"executor {address}: {why}") from None
    finally:
        channel.close()


def _check_cluster(ray: Any, address: str) -> None:
    """ExecutorError unless the cluster's imagefunnel is this process's version.

    The check runs ``importlib.metadata.version`` there, a function every Python has, so that it
    can say "not installed" where an actor of ours would only die unpickling its class.
    """
    mine = importlib.metadata.version("imagefunnel")  # what is installed, as on the cluster
    probe = ray.remote(num_cpus=0, max_retries=0)(importlib.metadata.version)
    try:
        theirs = ray.get(probe.remote("imagefunnel"), timeout=CHECK_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ExecutorError(
            f"executor {address}: the cluster ran no task in {CHECK_TIMEOUT_S:g} s (has it any nodes?)"
        ) from None
    except ray.exceptions.RayTaskError as exc:
        if isinstance(getattr(exc, "cause", None), importlib.metadata.PackageNotFoundError):
            raise ExecutorError(
                f"executor {address}: imagefunnel is not installed on the cluster "
                f"(install imagefunnel=={mine} with this process's extras on every node)"
            ) from None
        raise ExecutorError(f"executor {address}: the cluster cannot run tasks: {exc.cause!r}") from None
    if theirs != mine:
        raise ExecutorError(
            f"executor {address}: the cluster has imagefunnel {theirs}, this process {mine} "
            f"(install imagefunnel=={mine} on every node: verdicts must not depend on where they are made)"
        )


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
            self._require_ray()
            index = min(range(len(self._actors)), key=self._in_flight.__getitem__)
            try:
                pending = self._actors[index].run.remote(fn, *args).future()
            except self._lost as exc:
                raise ScoringWorkerError(f"cannot send work to Ray: {_last_line(exc)}") from exc
            self._in_flight[index] += 1
        out: Future[T] = Future()
        pending.add_done_callback(lambda done: self._settle(index, done, out))
        return out

    def _require_ray(self) -> None:
        # A Ray call made while disconnected would start a local instance of its own (Ray's
        # auto-init), scoring on this machine instead of on the cluster the pool was opened on.
        if not self._ray.is_initialized():
            raise ScoringWorkerError("the connection to Ray is gone (its cluster went away or was left)")

    @property
    def _lost(self) -> tuple[type[BaseException], ...]:
        """What Ray raises when the cluster, not the task, failed: a Ray Client connection that
        broke (after its reconnection grace period), a lost node or object."""
        return (ConnectionError, self._ray.exceptions.RayError)

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
        elif isinstance(error, self._lost):
            out.set_exception(ScoringWorkerError(f"scoring on Ray failed: {_last_line(error)}"))
        else:
            out.set_exception(error)

    def warm_up(self) -> list[int]:
        """Wait until every actor has started; returns their process ids."""
        self._require_ray()
        return [int(pid) for pid in self._ray.get([actor.pid.remote() for actor in self._actors])]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not self._ray.is_initialized():
            return  # its actors went with the connection; a kill now would start a local Ray
        for actor in self._actors:
            # no_restart: a killed actor stays dead; Ray itself keeps running for the next pool.
            try:
                self._ray.kill(actor, no_restart=True)
            except self._lost:
                # The cluster is gone (its actors with it): the error that says so is already the
                # job's; a second one here would replace it.
                return


def ray_executor(choice: ExecutorChoice) -> RayExecutor:
    """The pool ``choice`` names: ``choice.workers`` actors, or one per CPU Ray reports (at least 1)."""
    ray = connect_ray(choice.address)
    workers = choice.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    return RayExecutor(ray, workers=workers)
