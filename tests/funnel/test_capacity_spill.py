"""A deadline the cheap one-slot ComfyUI box cannot meet alone spills requests to a hosted API
(the funnel over real HTTP against the emulated market: the box runs one prompt at a time)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.funnel import Funnel, load_result
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.routing import ProviderTraits, Router
from imagefunnel.scoring import Scorer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

MODEL = "fal-ai/flux/dev"
StartMarket = Callable[[Scenario], MarketServer]

MARKET = Scenario.model_validate(
    {
        "name": "spill",
        "seed": 5,
        "providers": [
            {
                "name": "api",
                "protocol": "fal",
                "models": [MODEL],
                "price_usd_per_mp": 0.02,
                "processing_s": [0.05, 0.1],
            }
        ],
        # 20 steps × 0.25 s: 5 s a prompt, one at a time, about $0.0007 each.
        "comfyui_boxes": [
            {"name": "box", "models": [MODEL], "usd_per_hour": 0.5, "seconds_per_step": 0.25, "load_s": 0.1}
        ],
    }
)
# Four at once: the box alone would finish the third after ~15 s and the fourth after ~20 s; the
# deadline is 14 s. What the owner configures: the box's ~5 s a prompt, the API's ~1 s.
TRAITS = {"box": ProviderTraits(expected_latency_s=5.0), "api": ProviderTraits(expected_latency_s=1.0)}
SPEC = JobSpec.model_validate(
    {
        "prompts": ["a headshot"],
        "size": {"width": 256, "height": 256},
        "deliver": 4,
        "concurrency": 4,
        "max_candidates": 12,
        "budget_usd": 1.0,
        "deadline_s": 14,
        "seed": 2,
    }
)


async def run(market: MarketServer, store: Store, blobs: BlobStore, *, capacity_aware: bool):  # type: ignore[no-untyped-def]
    providers = market_providers(market, MODEL)
    router = Router(providers, ledger=store, traits=TRAITS, capacity_aware=capacity_aware)
    funnel = Funnel(router=router, scorer=Scorer(), store=store, blobs=blobs)
    started = time.monotonic()
    try:
        outcome = await funnel.run(SPEC)
    finally:
        for p in providers:
            await p.aclose()
    return outcome, load_result(store, blobs, outcome.job_id), time.monotonic() - started


@pytest.mark.slow
async def test_the_box_queue_past_the_deadline_spills_to_the_hosted_api(
    market_factory: StartMarket, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(MARKET)
    outcome, result, _ = await run(market, store, blobs, capacity_aware=True)
    assert outcome.status == "delivered"
    used = {p.provider: p.attempts for p in result.providers if p.attempts}
    assert used.get("box", 0) >= 2  # the cheap box is still used, as far as its queue allows
    assert used.get("api", 0) >= 1  # the rest spilled
    timed_out = [row for row in store.ledger(outcome.job_id) if row.error_type == "ProviderTimeout"]
    assert not timed_out, "; ".join(
        f"{r.provider} {r.started_at:%S.%f} {r.latency_s:.2f} {r.error_type}"
        for r in store.ledger(outcome.job_id)
    )


@pytest.mark.slow
async def test_the_capacity_blind_router_queues_requests_the_box_cannot_finish(
    market_factory: StartMarket, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(MARKET)
    outcome, _, _ = await run(market, store, blobs, capacity_aware=False)
    # What the router did before the capacity model: all four go to the box, and the ones queued
    # behind the first two are cut off by their timeouts before they run, then bought elsewhere.
    timed_out = [row for row in store.ledger(outcome.job_id) if row.error_type == "ProviderTimeout"]
    assert timed_out and all(row.provider == "box" for row in timed_out)
