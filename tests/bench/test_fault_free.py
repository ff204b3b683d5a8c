import math

import pytest

from imagefunnel.bench.fault_free import has_faults, without_faults
from imagefunnel.bench.report import markdown, targets
from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.routing import DEFAULT_POLICY, RoutingReport, dispersion, run_routing_bench
from imagefunnel.bench.verdicts import CLEAN, ScorerCalibration
from imagefunnel.bench.workload import JobStats, Workload
from imagefunnel.market.scenario import Scenario, load_scenario

BASE = {"protocol": "fal", "models": ["fal-ai/flux/dev"], "processing_s": [3, 5], "defect_mix": {"blur": 1}}
FAULTY = Scenario.model_validate(
    {
        "name": "faulty",
        "seed": 7,
        "providers": [
            {
                **BASE,
                "name": "flaky",
                "price_usd_per_mp": 0.01,
                "price_schedule": [{"after_s": 60, "usd_per_mp": 0.03}],
                "defect_rate": 0.3,
                "rate_limit_per_s": 2.0,
                "error_5xx_rate": 0.1,
                "failure_rate": 0.05,
                "garbage_rate": 0.02,
                "outages": [{"start_s": 10, "end_s": 40}],
                "faults": [
                    {
                        "kind": "rate_limit",
                        "start_s": 0,
                        "end_s": 30,
                        "fraction": 0.5,
                        "retry_after_s": [1, 2],
                    },
                    {
                        "kind": "preemption",
                        "start_s": 30,
                        "end_s": 60,
                        "fraction": 0.2,
                        "at_fraction": [0.2, 0.8],
                    },
                ],
            },
            {**BASE, "name": "steady", "price_usd_per_mp": 0.02, "defect_rate": 0.1},
        ],
    }
)
FAULT_FIELDS = {"faults", "outages", "error_5xx_rate", "failure_rate", "garbage_rate"}
PERFECT = ScorerCalibration({CLEAN: 0, "blur": 4}, {CLEAN: 4, "blur": 4}, 512, 512, 0.0)
WORKLOAD = Workload(jobs=3, deliver=4, interarrival_s=30, model="flux-dev", width=512, height=512)


def test_stripping_removes_every_fault_and_keeps_everything_else() -> None:
    clean = without_faults(FAULTY)
    flaky = clean.provider("flaky")
    assert flaky.faults == () and flaky.outages == ()
    assert flaky.error_5xx_rate == flaky.failure_rate == flaky.garbage_rate == 0.0
    for before, after in zip(FAULTY.providers, clean.providers, strict=True):
        assert before.model_dump(exclude=FAULT_FIELDS) == after.model_dump(exclude=FAULT_FIELDS)
    assert clean.model_dump(exclude={"providers"}) == FAULTY.model_dump(exclude={"providers"})
    # Prices, their schedule and the published rate limit are the market, not faults.
    assert flaky.price_at(90) == pytest.approx(0.03) and flaky.rate_limit_per_s == 2.0
    assert Scenario.model_validate(clean.model_dump()) == clean  # still a valid scenario
    assert FAULTY.provider("flaky").outages  # the original is untouched


def test_a_self_hosted_boxs_faults_are_stripped_too() -> None:
    scenario = load_scenario("demo")
    if not scenario.comfyui_boxes:
        pytest.skip("the demo scenario has no self-hosted box")
    box = scenario.comfyui_boxes[0].model_copy(update={"hang_rate": 0.3, "error_rate": 0.1})
    clean = without_faults(scenario.model_copy(update={"comfyui_boxes": (box,)})).comfyui_boxes[0]
    assert clean.hang_rate == clean.error_rate == 0.0 and clean.outages == ()
    assert clean.usd_per_hour == box.usd_per_hour and clean.seconds_per_step == box.seconds_per_step


def test_has_faults() -> None:
    assert has_faults(FAULTY)
    assert not has_faults(without_faults(FAULTY))
    assert has_faults(load_scenario("outage"))
    assert not has_faults(load_scenario("calm"))


def _result(name: str, durations: list[float]) -> PolicyResult:
    jobs = tuple(
        JobStats(index=i, started=0.0, deliver=1, finished=d, dispatched=1, generated=1, accepted=1)
        for i, d in enumerate(durations)
    )
    return PolicyResult(name, jobs, spend_usd=1.0, billed_requests=len(jobs), spend_by_provider={"a": 1.0})


def _report(faulty_s: list[float], clean_s: list[float] | None) -> RoutingReport:
    return RoutingReport(
        scenario="faulty",
        workload=WORKLOAD,
        calibration=PERFECT,
        dispersion=dispersion(FAULTY, WORKLOAD, single="steady"),
        single_provider="steady",
        policies=(_result(DEFAULT_POLICY, faulty_s),),
        litellm=(),
        decisions=None,
        fault_free=None if clean_s is None else _result(DEFAULT_POLICY, clean_s),
    )


def _p99_target(report: RoutingReport) -> list[tuple[str, float, bool]]:
    return [(t.what, t.measured, t.met) for t in targets(report) if "without faults" in t.what]


def test_the_p99_target_compares_against_the_fault_free_run() -> None:
    ((what, ratio, met),) = _p99_target(_report([10, 20, 140], [10, 20, 100]))
    assert ratio == pytest.approx(1.4) and met
    assert "140 s vs 100 s" in what
    ((_, ratio, met),) = _p99_target(_report([10, 20, 160], [10, 20, 100]))
    assert ratio == pytest.approx(1.6) and not met
    text = markdown(_report([10, 20, 160], [10, 20, 100]))
    assert "job p99 s (no faults) 100" in text
    assert (
        "| job p99 vs the same scenario without faults (160 s vs 100 s) | ≤ 1.50× | 1.600 | **no** |" in text
    )


def test_no_fault_free_run_no_target() -> None:
    report = _report([10, 20, 140], None)
    assert _p99_target(report) == []
    assert "no faults" not in markdown(report)


def test_a_fault_free_run_of_zero_seconds_is_not_a_ratio() -> None:
    ((_, ratio, met),) = _p99_target(_report([10], [0]))
    assert math.isnan(ratio) and not met


@pytest.mark.parametrize("fault_free", [True, False])
def test_the_bench_runs_the_default_policy_without_faults_unless_told_not_to(fault_free: bool) -> None:
    report = run_routing_bench(
        FAULTY,
        WORKLOAD,
        single_provider="steady",
        policies=(DEFAULT_POLICY,),
        litellm=False,
        calibration_samples=1,
        decisions_in_flight=0,
        workers=1,
        fault_free=fault_free,
    )
    assert [r.name for r in report.policies] == [DEFAULT_POLICY]
    if not fault_free:
        assert report.fault_free is None
        return
    assert report.fault_free is not None and report.fault_free.name == DEFAULT_POLICY
    assert report.fault_free.failed_requests == 0  # no 5xx, no failures, no outage left
    faulty = report.result(DEFAULT_POLICY)
    assert faulty is not None
    # With its outage and 429s `flaky` is shunned; without them its lower price wins work.
    assert "flaky" not in faulty.spend_by_provider
    assert report.fault_free.spend_by_provider.get("flaky", 0.0) > 0
