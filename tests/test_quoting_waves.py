"""``quote_job``: the quote plays the spec's own wave rule and counts the time to score candidates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.quoting import DEFAULT_SCORE_S, frozen_book, quote_job
from imagefunnel.spec import JobSpec, UseCase

MODEL = "fal-ai/flux/dev"


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    scenario = Scenario.model_validate(
        {
            "name": "one",
            "seed": 1,
            "providers": [{"name": "a", "protocol": "fal", "models": [MODEL], "price_usd_per_mp": 0.02}],
        }
    )
    with MarketServer(scenario) as server:
        yield server


async def quote(market: MarketServer, *, score_s: float | None = None, **spec: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {
        "use_case": "generic", "prompts": ["a lighthouse"], "model": MODEL, "deliver": 6,
        "max_candidates": 24, "budget_usd": 5.0, "deadline_s": 60.0, "concurrency": 16,
    }  # fmt: skip
    return await quote_job(
        JobSpec.model_validate(base | spec),
        market_providers(market, MODEL),
        pass_rates=frozen_book([]),
        latencies={"a": 1.0},
        confidence=0.9,
        simulations=2000,
        seed=1,
        score_s=score_s,
    )


async def test_a_spec_confidence_is_quoted_with_the_waves_it_sizes(market: MarketServer) -> None:
    # The same quote confidence (0.9) for both: only the spec's confidence sizes the waves. A 60 s
    # deadline of 1 s round trips leaves time to spare, so the confident waves buy less past K and
    # take longer, as the funnel's would.
    margin = await quote(market)
    confident = await quote(market, confidence=0.99)
    assert confident.confidence == margin.confidence == 0.9
    assert confident.expected_spend_usd < 0.95 * margin.expected_spend_usd
    assert confident.expected_wall_s > margin.expected_wall_s


async def test_the_wall_time_counts_scoring_at_the_use_cases_default_or_as_measured(
    market: MarketServer,
) -> None:
    default = await quote(market)
    assert default.score_s == DEFAULT_SCORE_S[UseCase.GENERIC]
    instant = await quote(market, score_s=0.0)
    slow = await quote(market, score_s=2.0)
    assert slow.score_s == 2.0
    # A wave of 1 s requests (its slowest about 1.25 s) waits for its verdicts: 2 s more a round.
    assert instant.expected_wall_s < default.expected_wall_s < slow.expected_wall_s
    assert slow.expected_wall_s > 2 * instant.expected_wall_s
    assert slow.expected_spend_usd == pytest.approx(instant.expected_spend_usd)
