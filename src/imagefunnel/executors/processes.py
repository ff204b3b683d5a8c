"""A pool of worker processes for scoring, for the work that holds the GIL (dlib, parts of OCR).

Each worker builds the job's scorer once, in the pool's initializer, from a picklable
:class:`ScorerConfig`: models are loaded in every worker and never pickled. Tasks name the config
again, and :func:`worker_scorer` finds the scorer already built for it. Results (frozen verdicts,
hashes) are pickled back. Start-up costs seconds (a fresh interpreter, imports, models): open one
pool per run, never one per job wave, and :func:`warm_up` it to pay that before the clock matters.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from imagefunnel.executors.config import (
    ExecutorChoice,
    ScorerConfig,
    ScoringWorkerError,
)
from imagefunnel.executors.local import local_executor
from imagefunnel.scoring import Scorer

__all__ = ["open_executor", "process_executor", "run_in", "warm_up", "worker_scorer"]

T = TypeVar("T")


@functools.lru_cache(maxsize=4)
def worker_scorer(config: ScorerConfig) -> Scorer:
    """The scorer of ``config``, built once per process (a worker serves one job's config at a time).

    A cache rather than a plain global set by the initializer: it is keyed by the config, so a task
    can never be scored by the scorer of another job, and it also works in the parent process.
    """
    return config.build()


def _init_worker(config: ScorerConfig) -> None:
    worker_scorer(config)  # load the models now, so the first candidate does not pay for them


def _ready() -> int:
    return os.getpid()


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def process_executor(
    config: ScorerConfig, *, workers: int | None = None, start_method: str = "spawn"
) -> ProcessPoolExecutor:
    """A process pool whose workers score with the scorer ``config`` builds (see the module doc)."""
    return ProcessPoolExecutor(
        max_workers=workers or default_workers(),
        mp_context=multiprocessing.get_context(start_method),
        initializer=_init_worker,
        initargs=(config,),
    )


def open_executor(choice: ExecutorChoice, config: ScorerConfig) -> Executor:
    """The executor ``choice`` names; ``config`` is only used by process workers."""
    if choice.kind == "threads":
        return local_executor(choice.workers)
    if choice.kind == "ray":
        from imagefunnel.executors.ray_pool import ray_executor  # Ray is an optional extra

        return ray_executor(choice)
    return process_executor(config, workers=choice.workers, start_method=choice.start_method)


def warm_up(executor: Executor, *, workers: int) -> float:
    """Start the workers and wait until they answer; returns the seconds it took.

    One ping per worker starts every process (a spawning pool starts them on demand); the first
    answers arrive once a worker's initializer has built its scorer. ScoringWorkerError if one died.
    """
    started = time.perf_counter()
    try:
        for future in [executor.submit(_ready) for _ in range(workers)]:
            future.result()
    except BrokenProcessPool as exc:
        raise ScoringWorkerError(f"a scoring worker could not start: {exc}") from exc
    return time.perf_counter() - started


async def run_in(executor: Executor | None, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on ``executor`` (None: the loop's default); a dead worker is a ScoringWorkerError.

    A worker that dies (a crash in native code, a scorer that cannot be built) breaks the whole pool:
    every pending and later task fails at once instead of waiting forever.
    """
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, fn, *args)
    except BrokenProcessPool as exc:
        raise ScoringWorkerError(f"a scoring worker process died: {exc}") from exc
