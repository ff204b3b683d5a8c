"""The funnel end to end over real HTTP against the emulated market (no mocks of our own code)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.funnel import Funnel, load_result
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.routing import Router
from imagefunnel.scoring import Scorer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

MODEL = "fal-ai/flux/dev"
StartMarket = Callable[[Scenario], MarketServer]
MakeScenario = Callable[..., Scenario]


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "prompts": ["a headshot"],
        "deliver": 3,
        "budget_usd": 5.0,
        "deadline_s": 60,
        "seed": 1,
    }
    return JobSpec.model_validate({**base, **kw})


async def run(market: MarketServer, store: Store, blobs: BlobStore, job: JobSpec):  # type: ignore[no-untyped-def]
    providers = market_providers(market, MODEL)
    funnel = Funnel(router=Router(providers, ledger=store), scorer=Scorer(), store=store, blobs=blobs)
    try:
        outcome = await funnel.run(job)
    finally:
        for p in providers:
            await p.aclose()
    return outcome, load_result(store, blobs, outcome.job_id)


async def test_stops_buying_as_soon_as_k_pass(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(scenario({"name": "clean", "price_usd_per_mp": 0.02}))
    outcome, result = await run(market, store, blobs, spec(deliver=4, concurrency=1))
    assert outcome.status == "delivered"
    # The first wave asks for more than 4 (prior pass rate 0.67), but with one request at a time
    # nothing is bought once the 4th candidate has passed.
    assert result.candidates_passed == 4
    assert result.candidates[-1].passed, "the last candidate bought is the one that made K"
    # Scoring overlaps the next purchase, but nothing is bought after the K-th pass is known.
    kth_pass = [row for row in store.candidates(outcome.job_id) if row.passed][3]
    assert all(row.started_at <= kth_pass.created_at for row in store.ledger(outcome.job_id))
    assert result.candidates_generated <= 4 + 1 + sum(not c.passed for c in result.candidates)
    assert len(store.ledger(outcome.job_id)) == result.candidates_generated
    assert len(market.billing()) == result.candidates_generated
    assert sorted(c.rank for c in result.candidates if c.delivered) == [1, 2, 3, 4]


async def test_budget_stop_delivers_partial_with_reason(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    # 0.25 MP at $0.04/MP = $0.01 per image; $0.035 buys 3 images.
    market = market_factory(scenario({"name": "p", "price_usd_per_mp": 0.04}))
    outcome, result = await run(
        market, store, blobs, spec(deliver=10, budget_usd=0.035, size={"width": 500, "height": 500})
    )
    assert outcome.status == "partial"
    assert result.delivered == 3
    assert "delivered 3 of 10" in outcome.stop_reason
    assert "budget $0.0350" in outcome.stop_reason
    assert result.spent_usd <= 0.035 + 1e-9
    assert sum(b.usd for b in market.billing()) == pytest.approx(result.spent_usd)


@pytest.mark.parametrize(
    ("fault", "expected_error"),
    [({"error_5xx_rate": 1.0}, "ProviderUnavailable"), ({"failure_rate": 1.0}, "ProviderUnavailable")],
)
async def test_failing_cheap_provider_costs_a_retry_elsewhere(
    market_factory: StartMarket,
    scenario: MakeScenario,
    store: Store,
    blobs: BlobStore,
    fault: dict[str, object],
    expected_error: str,
) -> None:
    market = market_factory(
        scenario(
            {"name": "cheap", "price_usd_per_mp": 0.01, **fault}, {"name": "good", "price_usd_per_mp": 0.03}
        )
    )
    outcome, result = await run(market, store, blobs, spec(deliver=3, concurrency=1))
    assert outcome.status == "delivered"
    ledger = store.ledger(outcome.job_id)
    cheap = [row for row in ledger if row.provider == "cheap"]
    assert cheap, "the cheaper provider is tried first"
    assert {row.error_type for row in cheap} == {expected_error}
    assert all(row.charged_usd == 0 for row in cheap), "failed requests are not billed"
    assert {c.provider for c in result.candidates} == {"good"}


async def test_garbage_output_is_rejected_and_replaced(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    # garbage = black images or truncated bytes on HTTP 200, billed by the provider.
    market = market_factory(
        scenario(
            {"name": "junk", "price_usd_per_mp": 0.01, "garbage_rate": 1.0},
            {"name": "good", "price_usd_per_mp": 0.03},
        )
    )
    outcome, result = await run(market, store, blobs, spec(deliver=3, concurrency=2))
    assert outcome.status == "delivered"
    junk_ledger = [row for row in store.ledger(outcome.job_id) if row.provider == "junk"]
    junk_candidates = [c for c in result.candidates if c.provider == "junk"]
    assert junk_ledger
    # Truncated bytes fail in the adapter (BadOutput, still charged); black images reach the scorer.
    for row in junk_ledger:
        if row.status == "failed":
            assert row.error_type == "BadOutput"
            assert row.charged_usd and row.charged_usd > 0
    assert all(not c.passed for c in junk_candidates)
    assert all(c.provider == "good" for c in result.candidates if c.delivered)
    billed = sum(b.usd for b in market.billing())
    assert billed == pytest.approx(result.spent_usd), "the ledger matches the provider's bill"


async def test_all_providers_down_ends_with_a_reason(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(scenario({"name": "down", "price_usd_per_mp": 0.01, "error_5xx_rate": 1.0}))
    outcome, result = await run(market, store, blobs, spec(deliver=2))
    assert outcome.status == "failed"
    assert "no provider" in outcome.stop_reason
    assert result.spent_usd == 0


async def test_defective_candidates_are_rejected_with_named_dimensions(
    market_factory: StartMarket, scenario: MakeScenario, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(
        scenario(
            {
                "name": "noisy",
                "price_usd_per_mp": 0.01,
                "defect_rate": 0.5,
                "defect_mix": {"noise": 1, "blur": 1},
            }
        )
    )
    outcome, result = await run(market, store, blobs, spec(deliver=5, max_candidates=40))
    assert outcome.status == "delivered"
    for cand in result.candidates:
        truth = market.truth(cand.provider_request_id)
        if truth.defect is not None:
            assert not cand.passed, f"{truth.defect} slipped through"
            assert cand.failed, "every rejection names its dimension"
