from pathlib import Path

import pytest
from bench_fixtures import catching

from imagefunnel.bench.oracle import ScenarioHindsight, true_pass_rate
from imagefunnel.bench.report import markdown, targets, write_section
from imagefunnel.bench.routing import RoutingReport, dispersion
from imagefunnel.bench.simrun import BLIND, SimSetup, policies_for, run_policy
from imagefunnel.bench.verdicts import CLEAN, ScorerCalibration, VerdictModel, calibrate_scorer
from imagefunnel.bench.workload import Workload
from imagefunnel.market.defects import Defect
from imagefunnel.market.scenario import Scenario, load_scenario

BASE = {"protocol": "fal", "models": ["fal-ai/flux/dev"], "processing_s": [3, 5], "defect_mix": {"blur": 1}}
TRAP_MARKET = Scenario.model_validate(
    {
        "name": "trap",
        "seed": 2,
        "providers": [
            {**BASE, "name": "premium", "price_usd_per_mp": 0.035, "defect_rate": 0.2},
            {**BASE, "name": "trap", "price_usd_per_mp": 0.010, "defect_rate": 0.7},
            {**BASE, "name": "good", "price_usd_per_mp": 0.015, "defect_rate": 0.05},
        ],
    }
)
# What the real scorer does with these labels (measured: blur is always caught, clean passes).
PERFECT = catching("blur", "black", side=512)
WORKLOAD = Workload(jobs=4, deliver=20, interarrival_s=30, model="flux-dev", width=512, height=512)


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    setup = SimSetup(TRAP_MARKET, WORKLOAD, PERFECT, single_provider="premium")
    return {
        name: run_policy(name, setup)
        for name in ("single", "cheapest_per_call", "cost_per_accepted", "oracle")
    }


def test_cost_per_accepted_beats_cheapest_per_call_when_pass_rates_differ(results: dict) -> None:  # type: ignore[type-arg]
    mine, cheapest, oracle = results["cost_per_accepted"], results["cheapest_per_call"], results["oracle"]
    assert mine.delivered == cheapest.delivered == 4 * 20
    assert mine.cost_per_delivered < 0.8 * cheapest.cost_per_delivered
    assert oracle.cost_per_delivered <= mine.cost_per_delivered * 1.01
    assert mine.cost_per_delivered < 1.15 * oracle.cost_per_delivered
    assert mine.spend_by_provider.get("good", 0) > 0.8 * mine.spend_usd
    assert cheapest.spend_by_provider.get("trap", 0) > 0.8 * cheapest.spend_usd


def test_money_comes_from_the_market_and_matches_the_router_ledger(results: dict) -> None:  # type: ignore[type-arg]
    single = results["single"]
    assert set(single.spend_by_provider) == {"premium"}
    assert single.ledger_usd == pytest.approx(single.spend_usd)
    assert single.candidates_per_delivered > 1.0
    assert single.job_seconds(99) >= single.job_seconds(50) > 0


def test_runs_are_deterministic() -> None:
    setup = SimSetup(
        TRAP_MARKET, Workload(jobs=2, deliver=5, model="flux-dev"), PERFECT, single_provider="premium"
    )
    a, b = run_policy("cost_per_accepted", setup), run_policy("cost_per_accepted", setup)
    assert (a.spend_usd, a.generated) == (b.spend_usd, b.generated)


def test_oracle_truth_and_verdicts_follow_the_calibration() -> None:
    trap = TRAP_MARKET.provider("trap")
    assert true_pass_rate(trap, PERFECT) == pytest.approx(0.3)
    hindsight = ScenarioHindsight(TRAP_MARKET, PERFECT, request=WORKLOAD.request(0, 0))
    assert hindsight.cost_per_accepted("trap", "flux-dev", 0.0) == pytest.approx(0.010 * 0.262144 / 0.3)
    leaky = ScorerCalibration({CLEAN: 0, "blur": 0}, {CLEAN: 4, "blur": 4}, 512, 512, 0.0)
    assert true_pass_rate(trap, leaky) == pytest.approx(1.0), "a scorer that misses blur passes everything"
    assert VerdictModel(leaky).calibration.p_pass(Defect.BLUR) == 1.0


def test_the_hindsight_knows_garbage_windows() -> None:
    garbage = {"kind": "garbage", "start_s": 100, "end_s": 200, "fraction": 0.5, "garbage": "truncated"}
    market = Scenario.model_validate(
        {
            "name": "g",
            "seed": 1,
            "providers": [
                {**BASE, "name": "good", "price_usd_per_mp": 0.015, "defect_rate": 0.0, "faults": [garbage]}
            ],
        }
    )
    hindsight = ScenarioHindsight(market, PERFECT, request=WORKLOAD.request(0, 0))
    before = hindsight.cost_per_accepted("good", "flux-dev", 50.0)
    assert before is not None
    assert hindsight.cost_per_accepted("good", "flux-dev", 150.0) == pytest.approx(2 * before)
    assert hindsight.cost_per_accepted("good", "flux-dev", 250.0) == pytest.approx(before)


def test_calibration_scores_real_rendered_images() -> None:
    calibration = calibrate_scorer([Defect.BLUR], samples=2, width=256, height=256)
    assert calibration.samples == {CLEAN: 2, "blur": 2}
    assert calibration.reject_rate("blur") == 1.0
    assert calibration.reject_rate(CLEAN) == 0.0


def test_seed_market_reproduces_the_seeds_dispersion() -> None:
    d = dispersion(load_scenario("seed-market"), Workload(model="flux-dev"), single="premium")
    assert d.single_usd_per_mp == pytest.approx(0.035)
    assert d.cheapest_usd_per_mp == pytest.approx(0.012, abs=0.0008)


def test_report_section_is_written_and_replaced_in_place(results: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    report = RoutingReport(
        scenario="trap",
        workload=WORKLOAD,
        calibration=PERFECT,
        dispersion=dispersion(TRAP_MARKET, WORKLOAD, single="premium"),
        single_provider="premium",
        policies=tuple(results.values()),  # type: ignore[arg-type]
        litellm=(),
        decisions=None,
        command="imagefunnel bench routing --scenario trap",
    )
    checks = {t.what: t.met for t in targets(report)}
    assert checks["cost per delivered vs `cheapest_per_call`"]
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Routing\n\nHow it works.\n\n## Scoring\n\nTheirs.\n", encoding="utf-8")
    write_section(doc, markdown(report), scenario="trap")
    write_section(doc, markdown(report), scenario="trap")
    text = doc.read_text(encoding="utf-8")
    assert text.count("bench:routing:trap:start") == 1
    assert text.index("How it works.") < text.index("| `cost_per_accepted` |") < text.index("## Scoring")
    assert "`imagefunnel bench routing --scenario trap`" in text
    assert "the price floor, the same without capacity or timing" in text


def test_a_price_spike_on_the_cheapest_provider_is_not_learned_for_good() -> None:
    """spot's GPU-second price triples for ten minutes; its adapter keeps quoting the list price, so
    the router learns the spike from charges. It must unlearn it when the spike ends (reproduced:
    drift that never decays kept spot out for good, 1.18x the hindsight policy's cost)."""
    calibration = catching("blur", "noise", "jpeg_blocking", "underexposed", "overexposed", "color_cast")
    workload = Workload(jobs=40, deliver=20, interarrival_s=45, model="flux-dev", width=1024, height=1024)
    setup = SimSetup(load_scenario("price-spike"), workload, calibration, single_provider="mid")
    mine, oracle = run_policy("cost_per_accepted", setup), run_policy("oracle", setup)
    assert mine.delivered == oracle.delivered == 40 * 20
    assert mine.cost_per_delivered < 1.08 * oracle.cost_per_delivered


def test_hedged_requests_wait_for_the_retry_after_of_a_429() -> None:
    """A hedged primary starts as its own task; decisions made before a 429 opened the breaker must
    not go out after it (reproduced: 74 requests reached the market inside a Retry-After)."""
    calibration = catching("blur", "noise", "overexposed", "underexposed")
    workload = Workload(jobs=20, deliver=20, interarrival_s=10, model="flux-dev", width=1024, height=1024)
    setup = SimSetup(load_scenario("rate-storm"), workload, calibration, single_provider="cheap")
    hedged = run_policy("cost_per_accepted+hedge", setup)
    assert hedged.hedges > 0
    assert hedged.spend_by_provider.get("cheap", 0) > 0  # it is used, within its rate limit
    assert hedged.before_retry_after == 0
    assert hedged.failed_pct == 0


def test_a_deadline_spills_a_cheap_one_slot_box_to_the_hosted_apis() -> None:
    """box runs one request at a time and is by far the cheapest; jobs arrive faster than it alone
    can serve them before their deadline. The router that estimates completion keeps the box busy
    and spills the rest; the capacity-blind one loses requests to timeouts in the box's queue."""
    calibration = catching("blur", "noise", "jpeg_blocking", "underexposed", "overexposed", "color_cast")
    workload = Workload(
        jobs=10, deliver=10, interarrival_s=30, deadline_s=60, model="flux-dev", width=1024, height=1024
    )
    scenario = load_scenario("box-deadline")
    assert policies_for(scenario)[-1] == BLIND
    setup = SimSetup(scenario, workload, calibration, single_provider="box")
    aware, blind = run_policy("cost_per_accepted", setup), run_policy(BLIND, setup)
    assert aware.delivered == blind.delivered == 10 * 10
    assert aware.deadline_misses(60) <= blind.deadline_misses(60)
    assert aware.spend_by_provider["box"] > 2 * blind.spend_by_provider.get("box", 0.0)
    assert set(aware.spend_by_provider) > {"box"}  # spilled
    assert aware.cost_per_delivered < 0.9 * blind.cost_per_delivered
