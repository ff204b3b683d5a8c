"""Scoring on Ray (a local instance, started once per test session): the same verdicts as in-process
scoring, work spread over the actors, typed errors, and a whole job scored on Ray."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from executor_fixtures import DEFECTIVE, PHOTOS, same_verdicts_as_in_process

from imagefunnel.errors import ScoringWorkerError
from imagefunnel.executors import ExecutorChoice, ScorerConfig, open_executor, run_in
from imagefunnel.executors.ray_pool import RayExecutor, ray_executor
from imagefunnel.funnel.engine import score_candidate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(ray_local: object) -> Iterator[RayExecutor]:
    executor = ray_executor(ExecutorChoice(kind="ray", workers=2))
    with executor:
        yield executor


def test_ray_workers_give_the_same_verdicts_and_hashes_as_in_process_scoring(
    pool: RayExecutor, config: ScorerConfig, images: dict[str, bytes]
) -> None:
    by_name = same_verdicts_as_in_process(pool, config, images)
    assert all(by_name[name][0].passed for name in PHOTOS)
    assert not any(by_name[name][0].passed for name in DEFECTIVE)


def test_the_work_is_spread_over_every_actor_in_other_processes(pool: RayExecutor) -> None:
    pids = set(pool.warm_up())
    assert len(pids) == 2 and os.getpid() not in pids
    futures = [pool.submit(os.getpid) for _ in range(8)]  # each to the actor with the fewest in flight
    assert {f.result(timeout=120) for f in futures} == pids


def test_a_scorer_that_cannot_be_built_on_ray_is_a_typed_error(
    pool: RayExecutor, images: dict[str, bytes]
) -> None:
    broken = ScorerConfig(dimensions=("no_such_dimension",))
    with pytest.raises(ScoringWorkerError, match="Ray worker"):
        asyncio.run(run_in(pool, score_candidate, broken, images["obama_2.jpg"]))


def test_a_pool_that_was_shut_down_takes_no_work_and_ray_stays_up(ray_local: object) -> None:
    executor = open_executor(ExecutorChoice(kind="ray", workers=1), ScorerConfig())
    assert isinstance(executor, RayExecutor) and executor.warm_up()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(os.getpid)
    assert ray_local.is_initialized()  # type: ignore[attr-defined]


async def test_a_whole_job_scores_on_ray_through_the_executor_url(ray_local: object, tmp_path: Path) -> None:
    from imagefunnel.cli.demo import market_providers
    from imagefunnel.jobs import run_funnel_job
    from imagefunnel.market.scenario import Scenario
    from imagefunnel.market.server import MarketServer
    from imagefunnel.spec import JobSpec
    from imagefunnel.store import BlobStore, Store

    scenario = Scenario.model_validate(
        {
            "name": "ray",
            "seed": 4,
            "providers": [
                {
                    "name": "p",
                    "protocol": "fal",
                    "models": ["fal-ai/flux/dev"],
                    "processing_s": [0.01, 0.02],
                    "price_usd_per_mp": 0.02,
                    "defect_rate": 0.5,
                    "defect_mix": {"blur": 1},
                }
            ],
        }
    )
    spec = JobSpec.model_validate(
        {
            "prompts": ["a mug"],
            "use_case": "generic",
            "deliver": 3,
            "max_candidates": 30,
            "budget_usd": 5.0,
            "seed": 2,
        }
    )
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    blobs = BlobStore(tmp_path / "blobs")
    try:
        with MarketServer(scenario) as market:
            outcome = await run_funnel_job(
                spec,
                market_providers(market, spec.model),
                store=store,
                blobs=blobs,
                executor_url="ray?workers=2",
            )
        assert outcome.status == "delivered"
        candidates = store.candidates(outcome.job_id)
        # Each stored verdict is the one in-process scoring gives the same bytes.
        local = ScorerConfig.from_spec(spec).build()
        for candidate in candidates:
            verdict, _ = score_candidate(local, blobs.get(candidate.blob_sha256), spec.prompts[0])
            assert candidate.passed == (verdict.passed and candidate.duplicate_of is None)
        assert any(not c.passed for c in candidates)  # blur was injected into about half of them
    finally:
        store.close()
