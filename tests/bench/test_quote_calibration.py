"""The quote-calibration bench: quote seeded jobs, run them in the simulated market, tabulate."""

import asyncio
import math
from pathlib import Path

import pytest

from imagefunnel.bench.quote_calibration import (
    BIN_EDGES,
    MODEL,
    CalibrationRun,
    JobDraw,
    ReliabilityBin,
    _quote,
    _request,
    draw_jobs,
    run_calibration,
)
from imagefunnel.bench.quote_report import BEGIN, END, QuoteBench, markdown, write_block
from imagefunnel.bench.simrun import _Aliased, served_by
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.bench.verdicts import CLEAN, ScorerCalibration
from imagefunnel.forecast import LIST_PRICE_SIGMA, price_risk
from imagefunnel.market.engine import Market
from imagefunnel.market.scenario import Scenario
from imagefunnel.routing import PassRateBook, PriceBook

BASE = {"models": ["fal-ai/flux/dev"], "processing_s": [3, 5], "defect_mix": {"blur": 1}}
MARKET = Scenario.model_validate(
    {
        "name": "two",
        "seed": 3,
        "providers": [
            {**BASE, "name": "cheap", "protocol": "fal", "price_usd_per_mp": 0.010, "defect_rate": 0.3},
            {
                **BASE,
                "name": "box",
                "protocol": "replicate",
                "models": ["black-forest-labs/flux-dev"],
                "pricing": {"unit": "gpu_second", "usd": 0.003},
                "defect_rate": 0.1,
            },
        ],
    }
)
PERFECT = ScorerCalibration(
    {CLEAN: 0, "blur": 8, "black": 8}, {CLEAN: 8, "blur": 8, "black": 8}, 512, 512, 0.0
)
JOBS = 6


@pytest.fixture(scope="module")
def runs() -> list[CalibrationRun]:
    return [
        run_calibration(MARKET, jobs=JOBS, start=start, calibration=PERFECT, simulations=200, seed=4)
        for start in ("warm", "cold")
    ]


def test_every_job_is_quoted_then_run_and_billed(runs: list[CalibrationRun]) -> None:
    for run in runs:
        assert len(run.jobs) + run.unquotable == JOBS
        for job in run.jobs:
            assert 0.0 <= job.quoted_p <= 1.0
            assert job.quoted_p95_usd <= job.budget_usd + 1e-9
            assert 0.0 < job.spend_usd <= job.budget_usd + 1e-9  # the budget guard holds
            assert job.delivered == (job.stop == "delivered")
            assert sum(n for _, n in job.billed) > 0
        assert run.over_budget == 0
        assert "| billed over budget |" in markdown(
            QuoteBench((run,), "cmd", seed=4, simulations=200, calibration_note="", seconds=1.0)
        )


def test_the_same_seed_gives_the_same_run(runs: list[CalibrationRun]) -> None:
    again = run_calibration(MARKET, jobs=JOBS, start="warm", calibration=PERFECT, simulations=200, seed=4)
    assert again == runs[0]


def test_warm_jobs_quote_from_what_earlier_jobs_learned(runs: list[CalibrationRun]) -> None:
    warm, cold = runs
    assert warm.jobs[0].quoted_p == cold.jobs[0].quoted_p  # the first job knows nothing either way
    assert [j.quoted_p for j in warm.jobs[1:]] != [j.quoted_p for j in cold.jobs[1:]]


def test_the_reliability_table_covers_every_job_once(runs: list[CalibrationRun]) -> None:
    for run in runs:
        bins = run.bins()
        assert sum(b.count for b in bins) == len(run.jobs)
        for b in bins:
            assert b.low in BIN_EDGES and b.low <= b.mean_quoted <= b.high
            assert 0.0 <= b.observed <= 1.0
        assert 0.0 <= run.within_p95 <= 1.0


def test_a_bin_is_judged_against_three_points_and_its_noise() -> None:
    assert ReliabilityBin(0.8, 0.95, 400, 0.90, 0.92).verdict == "pass"
    assert ReliabilityBin(0.8, 0.95, 400, 0.90, 0.80).verdict == "fail"  # SE 1.5 pts
    small = ReliabilityBin(0.5, 0.65, 10, 0.60, 0.40)  # SE 15.5 pts: 20 pts off says little
    assert small.standard_error == pytest.approx(math.sqrt(0.24 / 10))
    assert small.verdict == "noise"


def test_the_block_is_written_between_its_markers_and_rewritten_in_place(
    runs: list[CalibrationRun], tmp_path: Path
) -> None:
    bench = QuoteBench(tuple(runs), "imagefunnel bench quote --jobs 6", 4, 200, "Verdicts: fixed.", 1.0)
    text = markdown(bench)
    assert "| two | warm | 6 |" in text and "| two | cold | 6 |" in text
    assert text.count("| quoted P | jobs |") == 2
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkeep me\n", encoding="utf-8")
    write_block(doc, text)
    write_block(doc, text.replace("--jobs 6", "--jobs 7"))
    written = doc.read_text(encoding="utf-8")
    assert written.count(BEGIN) == written.count(END) == 1
    assert "keep me" in written and "--jobs 7" in written and "--jobs 6" not in written


def test_job_draws_span_budgets_deadlines_and_concurrency() -> None:
    draws = draw_jobs(jobs=200, seed=0)
    assert draws == draw_jobs(jobs=200, seed=0)
    assert {d.concurrency for d in draws} == {2, 4, 8}
    assert min(d.deliver for d in draws) == 1 and max(d.deliver for d in draws) == 40
    zs = [d.budget_z for d in draws if d.budget_z is not None]
    assert min(zs) < -2 and max(zs) > 2 and len(zs) < len(draws)
    confident = [d.confidence for d in draws if d.confidence is not None]
    assert set(confident) == {0.9, 0.99} and 40 < len(confident) < 95


def test_a_job_asking_for_a_confidence_plays_the_funnels_confident_waves() -> None:
    from imagefunnel.bench.quote_calibration import _State
    from imagefunnel.funnel.waves import wave_size
    from imagefunnel.routing.budget import BudgetGuard

    for confidence in (None, 0.99):
        draw = JobDraw(deliver=10, deadline_s=60.0, concurrency=4, budget_z=None, confidence=confidence)
        state = _State(draw, deadline=60.0, budget=BudgetGuard(1.0), passed=3, generated=5, requested=5)
        state.round_s = 10.0 if confidence else None
        expected = wave_size(
            needed=7,
            passed=3,
            generated=5,
            left=35,
            confidence=confidence,
            time_left_s=50.0,
            round_s=state.round_s,
        )
        assert state.next_wave(10.0) == expected
    # The confident rule asks for more than the margin rule when few round trips are left.
    tight = wave_size(
        needed=7, passed=3, generated=5, left=35, confidence=0.99, time_left_s=10.0, round_s=10.0
    )
    loose = wave_size(
        needed=7, passed=3, generated=5, left=35, confidence=None, time_left_s=10.0, round_s=10.0
    )
    assert tight > loose


def test_a_quote_weighs_the_drift_its_price_book_learned() -> None:
    """A warm start hands its PriceBook to each job's quote: a provider that billed more than it
    quoted is quoted at the drifted price, the others at their quotes."""

    async def quoted() -> dict[str, tuple[float, float]]:
        loop = asyncio.get_running_loop()
        market = Market(MARKET, clock=loop.time)
        providers = [_Aliased(market, name, model=MODEL) for name in served_by(MARKET)]
        prices = PriceBook(clock=loop.time)
        box = await providers[[p.name for p in providers].index("box")].quote(_request(0, 0, seed=0))
        prices.observe_charge(box, 2.0 * box.usd)
        draw = JobDraw(deliver=2, deadline_s=60.0, concurrency=2, budget_z=None)
        quote = await _quote(
            providers, PassRateBook(clock=loop.time), prices, draw, 0, latencies={}, simulations=200, seed=0
        )
        assert quote is not None
        return {p.provider: (p.quoted_usd, p.expected_usd) for p in quote.providers}

    found = run_virtual(quoted())
    assert found["box"][1] == pytest.approx(2.0 * found["box"][0])
    assert found["cheap"][1] == pytest.approx(found["cheap"][0])


def test_only_the_market_providers_quoting_a_list_price_carry_a_price_risk() -> None:
    market = Market(MARKET, clock=lambda: 0.0)
    risk = {name: price_risk(_Aliased(market, name, model=MODEL)) for name in served_by(MARKET)}
    assert risk == {"cheap": 0.0, "box": LIST_PRICE_SIGMA}  # fal's adapter sees the live price
