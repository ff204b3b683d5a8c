from typing import Any

import pytest
from bench_fixtures import catching

from imagefunnel.bench.bound import lp_bound, price_floor
from imagefunnel.bench.simrun import SimSetup, run_policy
from imagefunnel.bench.workload import Workload
from imagefunnel.market.scenario import Scenario, load_scenario

# Priced per image, never defective: a request costs its list price and always passes.
BASE: dict[str, Any] = {
    "protocol": "openai",
    "models": ["flux-dev"],
    "defect_rate": 0.0,
    "queue_s": [0, 0],
    "processing_s": [10, 10],
}
PASS_ALL = catching("blur", side=512)
CHEAP, DEAR = 0.01, 0.03


def market(*cheap_extra: tuple[str, Any], dear: dict[str, Any] | None = None) -> Scenario:
    cheap = {**BASE, "name": "cheap", "pricing": {"unit": "image", "usd": CHEAP}, **dict(cheap_extra)}
    other = {**BASE, "name": "dear", "pricing": {"unit": "image", "usd": DEAR}, **(dear or {})}
    return Scenario.model_validate({"name": "hand", "seed": 1, "providers": [cheap, other]})


def one_job(deliver: int) -> Workload:
    # One job, arriving at 0, due at 100: a 10 s request can start until 90.
    return Workload(jobs=1, deliver=deliver, deadline_s=100, model="flux-dev", width=512, height=512)


def test_without_capacity_limits_it_is_the_price_floor() -> None:
    moving = ("price_schedule", [{"after_s": 40, "usd": 0.005}, {"after_s": 95, "usd": 0.02}])
    scenario = market(moving, dear={"price_schedule": [{"after_s": 20, "usd": 0.002}]})
    workload = Workload(jobs=5, deliver=10, interarrival_s=30, deadline_s=100, model="flux-dev")
    assert lp_bound(scenario, workload, PASS_ALL) == pytest.approx(price_floor(scenario, workload, PASS_ALL))
    assert lp_bound(market(), one_job(20), PASS_ALL) == pytest.approx(CHEAP)


def test_a_cheap_provider_that_covers_half_the_demand_raises_the_bound_to_the_mix() -> None:
    # One slot, 10 s a request, starts from 0 to 90: exactly 10 images in reach of a job wanting 20.
    scenario = market(("slots", 1))
    assert price_floor(scenario, one_job(20), PASS_ALL) == pytest.approx(CHEAP)
    assert lp_bound(scenario, one_job(20), PASS_ALL) == pytest.approx((10 * CHEAP + 10 * DEAR) / 20)
    assert lp_bound(scenario, one_job(10), PASS_ALL) == pytest.approx(CHEAP)


def test_a_slot_counts_its_mean_run_not_only_its_fastest() -> None:
    # One slot, runs of 5 to 15 s (mean 10), starts from 0 to 95: about 10 completions can be
    # expected (a renewal count), 20 if every run were the fastest. The windows allow at most 13.
    scenario = market(("slots", 1), ("processing_s", [5, 15]))
    cheap_images = (DEAR - lp_bound(scenario, one_job(30), PASS_ALL)) * 30 / (DEAR - CHEAP)
    assert 10 <= cheap_images <= 13


def test_a_rate_limit_caps_the_cheap_provider_generously() -> None:
    # 0.1 request/s: the token bucket admits 1 + 0.1 × 100 = 11 requests in the job's 100 s; the
    # bound counts capacity per window, with a burst per window, so it may allow one more.
    scenario = market(("rate_limit_per_s", 0.1), ("processing_s", [0.1, 0.3]))
    bound = lp_bound(scenario, one_job(22), PASS_ALL)
    assert bound >= (12 * CHEAP + 10 * DEAR) / 22 - 1e-12
    assert bound <= (11 * CHEAP + 11 * DEAR) / 22 + 1e-12


def test_an_outage_removes_the_providers_buckets() -> None:
    # Down until 50: the slot can start at 50, 60, 70, 80 and 90 only.
    down = ("outages", [{"start_s": 0, "end_s": 50}])
    assert lp_bound(market(("slots", 1), down), one_job(20), PASS_ALL) == pytest.approx(
        (5 * CHEAP + 15 * DEAR) / 20
    )
    # Down for the whole of the job's window: only the dear provider is left.
    gone = ("outages", [{"start_s": 0, "end_s": 95}])
    assert lp_bound(market(gone), one_job(20), PASS_ALL) == pytest.approx(DEAR)


def test_a_request_must_finish_by_the_deadline_at_the_providers_fastest() -> None:
    # Cheap only from 95 on: a 10 s request started then ends after the deadline at 100.
    late = ("price_schedule", [{"after_s": 0, "usd": 0.05}, {"after_s": 95, "usd": CHEAP}])
    assert lp_bound(market(late), one_job(20), PASS_ALL) == pytest.approx(DEAR)
    assert price_floor(market(late), one_job(20), PASS_ALL) == pytest.approx(CHEAP)


def test_no_policy_pays_less_than_the_bound_on_a_one_slot_box() -> None:
    calibration = catching("blur", "noise", "jpeg_blocking", "underexposed", "overexposed", "color_cast")
    workload = Workload(
        jobs=10, deliver=10, interarrival_s=30, deadline_s=60, model="flux-dev", width=1024, height=1024
    )
    scenario = load_scenario("box-deadline")
    bound, floor = lp_bound(scenario, workload, calibration), price_floor(scenario, workload, calibration)
    assert bound > 1.5 * floor, "the one-slot box cannot serve every job: its capacity must count"
    setup = SimSetup(scenario, workload, calibration, single_provider="box", seed=3)
    for name in ("oracle", "cost_per_accepted"):
        result = run_policy(name, setup)
        assert result.delivered == 10 * 10
        assert bound <= result.cost_per_delivered, name


def test_no_policy_pays_less_than_the_bound_on_a_rate_limited_market() -> None:
    calibration = catching("blur", "noise", "overexposed", "underexposed")
    # Jobs arriving every 5 s and due 40 s later want more than cheap's 2 requests/s can give.
    workload = Workload(
        jobs=6, deliver=30, interarrival_s=5, deadline_s=40, model="flux-dev", width=1024, height=1024
    )
    scenario = load_scenario("rate-storm")
    bound, floor = lp_bound(scenario, workload, calibration), price_floor(scenario, workload, calibration)
    assert bound > 1.05 * floor, "cheap's rate limit must count"
    setup = SimSetup(scenario, workload, calibration, single_provider="cheap", seed=5)
    result = run_policy("oracle", setup)
    assert result.delivered == 6 * 30
    assert bound <= result.cost_per_delivered
