"""``imagefunnel bench ray-scaling``: scoring throughput on Ray at 1, 2, ... actors, next to threads.

The same 1-megapixel JPEGs of real portraits (:func:`imagefunnel.bench.scoring.bench_images`) are
scored with the same scorer (the headshot cascade by default, as candidates are scored in a job:
cheap-first, early reject) through :func:`imagefunnel.funnel.engine.score_candidate`, on a local
Ray instance with W actors and, side by side in the same run, on W in-process threads. Start-up
(actor processes, imports, models) is timed apart and kept off the throughput clock: every worker
scores one image before the clock starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from imagefunnel.bench.scoring import bench_images
from imagefunnel.executors import ScorerConfig, local_executor
from imagefunnel.executors.ray_pool import RayExecutor, connect_ray
from imagefunnel.funnel.engine import score_candidate

__all__ = ["ScalingRun", "run_ray_scaling"]


@dataclass(frozen=True, slots=True)
class ScalingRun:
    executor: str  # "ray" or "threads"
    workers: int
    images: int
    wall_s: float
    startup_s: float

    @property
    def per_s(self) -> float:
        return self.images / self.wall_s


def run_ray_scaling(
    *,
    images: int = 24,
    workers: Sequence[int] = (1, 2),
    use_case: str = "headshot",
    progress: Callable[[str], None] = lambda _m: None,
) -> list[ScalingRun]:
    """Ray at each worker count, then threads at each: one list, Ray's first."""
    data = bench_images(images)
    config = ScorerConfig(use_case=use_case)
    ray = connect_ray(None)
    runs = []
    for count in workers:
        started = time.perf_counter()
        pool = RayExecutor(ray, workers=count)
        try:
            pool.warm_up()
            runs.append(_timed("ray", pool, config, data, count, time.perf_counter() - started))
        finally:
            pool.shutdown()
        progress(f"ray, {count} actor(s): {runs[-1].per_s:.2f} images/s")
    for count in workers:
        started = time.perf_counter()
        with local_executor(count) as threads:
            runs.append(_timed("threads", threads, config, data, count, time.perf_counter() - started))
        progress(f"threads, {count}: {runs[-1].per_s:.2f} images/s")
    return runs


def _timed(
    kind: str, executor: Executor, config: ScorerConfig, data: Sequence[bytes], workers: int, started_s: float
) -> ScalingRun:
    # One image per worker first: models load in every worker, off the clock (counted as start-up).
    warm = time.perf_counter()
    list(executor.map(score_candidate, [config] * workers, data[:workers]))
    startup = started_s + time.perf_counter() - warm
    start = time.perf_counter()
    list(executor.map(score_candidate, [config] * len(data), data))
    return ScalingRun(kind, workers, len(data), time.perf_counter() - start, startup)


def cores() -> int:
    return os.cpu_count() or 1
