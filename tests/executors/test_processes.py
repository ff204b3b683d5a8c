"""The process-pool executor: same verdicts as in-process scoring, typed errors, clean shutdown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from executor_fixtures import DEFECTIVE, PHOTOS, same_verdicts_as_in_process

from imagefunnel.executors import (
    ExecutorChoice,
    ScorerConfig,
    ScoringWorkerError,
    open_executor,
    process_executor,
    run_in,
    warm_up,
)
from imagefunnel.funnel.engine import score_candidate


@pytest.fixture(scope="module")
def pool(config: ScorerConfig) -> Iterator[ProcessPoolExecutor]:
    # One pool for the module: a spawned worker needs seconds to import and load its models.
    executor = process_executor(config, workers=2)
    with executor:
        yield executor


def test_process_workers_give_the_same_verdicts_and_hashes_as_in_process_scoring(
    pool: ProcessPoolExecutor, config: ScorerConfig, images: dict[str, bytes]
) -> None:
    by_name = same_verdicts_as_in_process(pool, config, images)
    assert all(by_name[name][0].passed for name in PHOTOS)
    assert not any(by_name[name][0].passed for name in DEFECTIVE)
    assert by_name["truncated"][1] is None and by_name["obama_2.jpg"][1] is not None


def test_the_workers_are_other_processes(pool: ProcessPoolExecutor) -> None:
    warm_up(pool, workers=2)
    assert len(pool._processes) == 2  # one ping per worker starts every process
    pids = {pool.submit(os.getpid).result() for _ in range(4)}
    assert pids <= set(pool._processes) and os.getpid() not in pids


def test_a_scorer_that_cannot_be_built_in_the_worker_is_a_typed_error_not_a_hang(
    images: dict[str, bytes],
) -> None:
    broken = ScorerConfig(dimensions=("no_such_dimension",))
    with process_executor(broken, workers=1) as executor, pytest.raises(ScoringWorkerError):
        asyncio.run(run_in(executor, score_candidate, broken, images["obama_2.jpg"]))


def test_a_worker_that_dies_mid_task_is_a_typed_error_and_the_pool_shuts_down() -> None:
    executor = process_executor(ScorerConfig(dimensions=("brightness",)), workers=1)
    with pytest.raises(ScoringWorkerError):
        asyncio.run(run_in(executor, os._exit, 3))
    with pytest.raises(ScoringWorkerError):  # broken for good: later work fails at once too
        warm_up(executor, workers=1)
    executor.shutdown(wait=True)
    assert not executor._processes  # every worker process is gone and joined


def test_a_pool_shuts_down_cleanly_after_work() -> None:
    executor = process_executor(ScorerConfig(dimensions=("brightness",)), workers=1)
    assert warm_up(executor, workers=1) > 0.0
    (process,) = executor._processes.values()
    executor.shutdown(wait=True)
    assert not process.is_alive() and process.exitcode == 0


def test_threads_are_chosen_by_default_and_score_in_this_process(
    config: ScorerConfig, images: dict[str, bytes]
) -> None:
    with open_executor(ExecutorChoice(), config) as executor:
        assert not isinstance(executor, ProcessPoolExecutor)
        verdict, phash = asyncio.run(run_in(executor, score_candidate, config, images["obama_2.jpg"]))
    assert verdict.passed and phash is not None
