"""The forecast: the funnel's wave rule and the router's policy as twins, and the quote's promises."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from imagefunnel.errors import SpecError
from imagefunnel.forecast import (
    DEFAULT_FAILURE_RATE,
    LIST_PRICE_SIGMA,
    JobPlan,
    ProviderOutlook,
    chance,
    forecast,
    holds,
    policy_scores,
    price_risk,
    refusal,
    wave_sizes,
)
from imagefunnel.funnel.engine import Funnel, _JobState
from imagefunnel.funnel.selection import Ranked
from imagefunnel.providers.base import PriceUnit, Quote
from imagefunnel.routing import (
    BudgetGuard,
    CostPerAcceptedPolicy,
    HealthView,
    Option,
    PassRate,
    PassRateKey,
    PriceBook,
    PricedQuote,
    Situation,
)
from imagefunnel.routing.breaker import BreakerState
from imagefunnel.spec import JobSpec, parse_spec


def option(name: str, usd: float, p: float, *, latency: float = 2.0, errors: float = 0.0) -> Option:
    quote = Quote(name, "m", usd, PriceUnit.PER_IMAGE, usd)
    view = HealthView(BreakerState.CLOSED, errors, latency, None, None, 0, None)
    rate = PassRate(PassRateKey(name, "m", "headshot"), p, 1.0 - p, 0.0)  # mean exactly p
    return Option(name, "m", PricedQuote(quote, 0.0, usd), rate, view, latency)


def outlook(name: str, usd: float, alpha: float, beta: float, *, learned: bool = False) -> ProviderOutlook:
    priced = option(name, usd, 0.5)
    rate = PassRate(PassRateKey(name, "m", "headshot"), alpha, beta, 0.0)
    real = Option(name, "m", priced.priced, rate, priced.health, 0.5)
    return ProviderOutlook.from_option(real, time_left_s=600.0, learned=learned, latency_s=0.5)


MARKET = [outlook("cheap", 0.001, 4.0, 6.0), outlook("good", 0.004, 9.0, 1.0)]


def plan(budget: float = 1.0, *, deliver: int = 12, deadline: float = 600.0, cap: int = 60) -> JobPlan:
    return JobPlan(deliver=deliver, budget_usd=budget, deadline_s=deadline, candidate_cap=cap, concurrency=4)


def test_wave_sizes_are_the_funnels_own_rule() -> None:
    funnel = Funnel.__new__(Funnel)
    funnel._clock = lambda: 0.0
    cases = list(itertools.product([1, 12, 60], [0, 3, 11], [0, 5, 30, 90], [0, 7]))
    for deliver, passed, generated, requested_extra in cases:
        if passed > generated or passed >= deliver:
            continue
        spec = JobSpec(prompts=["a"], deliver=deliver, budget_usd=1.0, max_candidates=4 * deliver + 40)
        state = _JobState(job_id="j", spec=spec, budget=BudgetGuard(1.0), deadline=1.0)
        state.passed = [Ranked(i, 1.0) for i in range(passed)]
        state.generated = generated
        state.requested = generated + requested_extra
        expected = funnel._next_wave_size(state)
        left = spec.candidate_cap - state.requested
        if left <= 0:
            continue
        ours = wave_sizes(
            deliver=deliver, passed=np.array([passed]), generated=np.array([generated]), left=np.array([left])
        )
        assert int(ours[0]) == expected, (deliver, passed, generated)


def test_confident_wave_sizes_are_the_funnels_own_rule() -> None:
    # The deadline is 100 s from "now" (clock 0); the slowest round trip timed so far decides how
    # many round trips are left, and so the chance each wave must meet the need with.
    funnel = Funnel.__new__(Funnel)
    funnel._clock = lambda: 0.0
    cases = itertools.product([1, 12, 60], [0, 3, 11], [0, 5, 30, 90], [None, 1.0, 30.0, 150.0])
    for deliver, passed, generated, round_s in cases:
        if passed > generated or passed >= deliver:
            continue
        spec = JobSpec(
            prompts=["a"], deliver=deliver, budget_usd=1.0, max_candidates=4 * deliver + 90, confidence=0.99
        )
        state = _JobState(job_id="j", spec=spec, budget=BudgetGuard(1.0), deadline=100.0, round_s=round_s)
        state.passed = [Ranked(i, 1.0) for i in range(passed)]
        state.generated = state.requested = generated
        expected = funnel._next_wave_size(state)
        ours = wave_sizes(
            deliver=deliver,
            passed=np.array([passed]),
            generated=np.array([generated]),
            left=np.array([spec.candidate_cap - generated]),
            confidence=0.99,
            time_left_s=np.array([100.0]),
            round_s=np.array([math.nan if round_s is None else round_s]),
        )
        assert int(ours[0]) == expected, (deliver, passed, generated, round_s)


@pytest.mark.parametrize("time_left", [math.inf, 600.0, 5.0, 1.0, 0.0])
def test_policy_scores_are_the_routers_cost_per_accepted_image(time_left: float) -> None:
    options = [option("a", 0.01, 0.9, latency=3.0, errors=0.2), option("b", 0.002, 0.3, latency=0.5)]
    policy = CostPerAcceptedPolicy(thompson=False)
    situation = Situation(now=0.0, time_left_s=time_left, use_case="headshot")
    outlooks = [ProviderOutlook.from_option(o, time_left_s=time_left, learned=True) for o in options]
    ours = policy_scores(np.array([[0.9, 0.3]]), outlooks, np.array([time_left]))[0]
    assert ours == pytest.approx([policy.score(o, situation) for o in options])


def test_a_quote_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    first = forecast(plan(0.02), MARKET, seed=3, simulations=500)
    assert forecast(plan(0.02), MARKET, seed=3, simulations=500) == first
    assert forecast(plan(0.02), MARKET, seed=4, simulations=500) != first


def test_more_budget_never_delivers_less() -> None:
    budgets = [0.004, 0.008, 0.016, 0.032, 0.064, 1.0]
    chances = [forecast(plan(b), MARKET, seed=1, simulations=1000).p_deliver for b in budgets]
    assert chances == sorted(chances)
    assert chances[0] < 0.05 < 0.9 < chances[-1]


def test_spend_stays_within_the_budget_and_the_stops_add_up() -> None:
    quote = forecast(plan(0.01), MARKET, seed=2, simulations=500)
    assert quote.spend_p95_usd <= 0.01 + 1e-9
    assert quote.expected_spend_usd <= quote.budget_usd + 1e-9
    assert sum(quote.stops.values()) == pytest.approx(1.0)
    assert quote.stops["budget"] > 0.5


def test_the_needed_budget_reaches_the_confidence_when_quoted_at_it() -> None:
    quote = forecast(plan(0.01), MARKET, seed=5, confidence=0.9, simulations=1000)
    assert quote.needed_budget_usd is not None and quote.needed_budget_usd > 0.01
    assert quote.p_deliver_at_needed is not None and quote.p_deliver_at_needed >= 0.9
    again = forecast(plan(quote.needed_budget_usd), MARKET, seed=5, confidence=0.9, simulations=1000)
    assert again.p_deliver >= 0.9
    assert refusal(again) is None


def test_a_budget_too_small_is_refused_with_the_budget_it_needs() -> None:
    quote = forecast(plan(0.01), MARKET, seed=5, confidence=0.99, simulations=1000)
    why = refusal(quote)
    assert why is not None
    assert why.startswith(f"budget $0.01 reaches P(deliver 12)={chance(quote.p_deliver)} < 0.99")
    assert f"a budget of ${quote.needed_budget_usd:.4g} reaches it" in why


def test_a_deadline_no_budget_can_beat_is_said_so() -> None:
    slow = plan(10.0, deadline=1.2)  # two rounds of 0.5 s requests: a few candidates at most
    quote = forecast(slow, MARKET, seed=1, confidence=0.99, simulations=500)
    assert quote.needed_budget_usd is None
    assert quote.stops["deadline"] > 0.9
    why = refusal(quote)
    assert why is not None and "no budget reaches it: the deadline of 1.2s" in why


def test_a_cold_start_says_it_uses_the_prior() -> None:
    cold = forecast(plan(), [outlook("a", 0.001, 2.0, 1.0)], simulations=200)
    assert cold.cold_start
    assert cold.pass_rates == "pass rates: prior Beta(2,1), no jobs learned yet"
    warm = forecast(plan(), [outlook("a", 0.001, 20.0, 5.0, learned=True)], simulations=200)
    assert not warm.cold_start and "learned" in warm.pass_rates


def test_the_providers_are_ranked_by_cost_per_accepted_image_with_their_share() -> None:
    quote = forecast(plan(), MARKET, seed=1, simulations=500)
    assert [p.provider for p in quote.providers] == ["cheap", "good"]  # 0.001/0.4 < 0.004/0.9
    assert sum(p.share for p in quote.providers) == pytest.approx(1.0)
    assert quote.providers[0].why.startswith("#1: $0.001 a call / P(pass) 0.40 (prior)")


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_a_confidence_outside_zero_to_one_is_a_spec_error(value: str) -> None:
    with pytest.raises(SpecError, match="confidence"):
        parse_spec(f"prompts: [a]\ndeliver: 1\nbudget_usd: 1\nconfidence: {value}\n", source="job.yaml")


def test_a_printed_chance_never_overstates_the_forecast() -> None:
    assert chance(0.9895) == "0.989"
    assert chance(0.71) == "0.710"
    assert chance(1.0) == "1.000"


def test_requests_in_flight_when_k_pass_are_bought_as_the_funnel_buys_them() -> None:
    # K=2, two slots, a sure pass: the first wave asks for 4. The first image to arrive frees a slot
    # while the second is still running, so a third request goes out before K have passed; the
    # fourth finds K passed and is never sent. Three are bought, not the two a round-by-round
    # play would buy.
    sure = dataclasses.replace(outlook("only", 0.01, 1000.0, 0.001), failure_rate=0.0)
    job = JobPlan(deliver=2, budget_usd=1.0, deadline_s=600.0, candidate_cap=8, concurrency=2)
    quote = forecast(job, [sure], seed=1, simulations=400)
    assert quote.p_deliver == 1.0
    assert quote.expected_spend_usd == pytest.approx(0.03)
    assert quote.expected_candidates == pytest.approx(3.0)


def test_a_failed_request_falls_over_to_the_runner_up_at_its_price() -> None:
    cheap = outlook("cheap", 0.001, 90.0, 10.0, learned=True)
    dear = outlook("dear", 0.004, 90.0, 10.0, learned=True)
    shares = {}
    spend = {}
    for rate in (0.0, 0.5):
        market = [dataclasses.replace(cheap, failure_rate=rate), dear]
        quote = forecast(plan(1.0), market, seed=1, simulations=500)
        shares[rate] = {p.provider: p.share for p in quote.providers}["dear"]
        spend[rate] = quote.expected_spend_usd
    assert shares[0.0] < 0.01
    assert shares[0.5] == pytest.approx(0.5, abs=0.05)
    assert spend[0.5] > 2 * spend[0.0]


def test_an_unmeasured_provider_is_assumed_to_fail_a_few_requests() -> None:
    fresh = outlook("fresh", 0.001, 2.0, 1.0)
    assert fresh.failure_rate == DEFAULT_FAILURE_RATE > 0
    measured = ProviderOutlook.from_option(
        option("flaky", 0.001, 0.5, errors=0.2), time_left_s=60.0, learned=False
    )
    assert measured.failure_rate == pytest.approx(0.2)


def test_a_gpu_second_request_holds_its_worst_case_as_the_dispatcher_does() -> None:
    # $0.001 a GPU-second, a 6 s run quoted at $0.006: held at the rate with its stop grace for at
    # most four runs, at least two, within what is left.
    timed = dataclasses.replace(outlook("box", 0.006, 9.0, 1.0), gpu_second_usd=0.001)
    flat = outlook("api", 0.006, 9.0, 1.0)
    held = holds([timed, flat], np.array([math.inf, 0.012]), np.array([600.0, 600.0]))
    assert held[0] == pytest.approx([0.001 * 1.25 * 24, 0.006])
    assert held[1] == pytest.approx([0.001 * 1.25 * 12, 0.006])  # 9.6 s affordable < two runs


def test_a_tight_budget_runs_fewer_gpu_second_requests_at_once() -> None:
    timed = dataclasses.replace(outlook("box", 0.006, 900.0, 1.0), gpu_second_usd=0.001)
    flat = outlook("api", 0.006, 900.0, 1.0)
    job = JobPlan(deliver=8, budget_usd=0.12, deadline_s=600.0, candidate_cap=32, concurrency=8)
    box = forecast(job, [timed], seed=1, simulations=300)
    api = forecast(job, [flat], seed=1, simulations=300)
    assert api.p_deliver == box.p_deliver == 1.0
    assert box.expected_wall_s > 1.5 * api.expected_wall_s  # $0.12 holds three 5x holds at a time


def test_a_box_that_runs_one_prompt_at_a_time_queues_the_jobs_requests() -> None:
    # K=8 sure passes, four at once, 0.5 s each: a hosted API runs them side by side (a few rounds
    # of 0.5 s, the slowest of each round counting), a one-slot box one after another (every
    # request bought, in flight when K passed included, x 0.5 s); what is bought is the same.
    sure = dataclasses.replace(outlook("box", 0.001, 1000.0, 0.001), failure_rate=0.0)
    job = JobPlan(deliver=8, budget_usd=1.0, deadline_s=600.0, candidate_cap=16, concurrency=4)
    hosted = forecast(job, [sure], seed=1, simulations=400)
    box = forecast(job, [dataclasses.replace(sure, slots=1)], seed=1, simulations=400)
    two = forecast(job, [dataclasses.replace(sure, slots=2)], seed=1, simulations=400)
    assert 0.9 < hosted.expected_wall_s < 2.0
    assert box.expected_wall_s == pytest.approx(box.expected_candidates * 0.5, rel=0.1)
    assert two.expected_wall_s == pytest.approx(box.expected_wall_s / 2, rel=0.2)
    assert box.expected_candidates == hosted.expected_candidates


def test_a_deadline_shorter_than_the_boxs_queue_is_quoted_as_unlikely() -> None:
    sure = dataclasses.replace(outlook("box", 0.001, 1000.0, 0.001), failure_rate=0.0, slots=1)
    job = JobPlan(deliver=8, budget_usd=1.0, deadline_s=2.5, candidate_cap=16, concurrency=4)
    assert forecast(job, [sure], seed=1, simulations=400).p_deliver < 0.05
    hosted = dataclasses.replace(sure, slots=None)
    assert forecast(job, [hosted], seed=1, simulations=400).p_deliver > 0.9


def confident(plan: JobPlan, confidence: float | None) -> JobPlan:
    return dataclasses.replace(plan, confidence=confidence)


def test_a_spec_confidence_buys_surer_waves_when_the_deadline_allows_few() -> None:
    # 1 s round trips, 16 at once: a 3.5 s deadline leaves about two waves after the first is timed,
    # so the confident rule's second wave is sized to finish (P 0.9 or more) and more jobs deliver,
    # at the price of the larger waves; the margin rule's second wave often leaves a third to miss.
    one = [dataclasses.replace(outlook("a", 0.001, 5.0, 5.0, learned=True), latency_s=1.0)]
    tight = JobPlan(deliver=6, budget_usd=1.0, deadline_s=3.5, candidate_cap=24, concurrency=16)
    margin = forecast(tight, one, seed=1, simulations=2000)
    sure = forecast(confident(tight, 0.99), one, seed=1, simulations=2000)
    assert sure.p_deliver > margin.p_deliver + 0.03
    assert sure.stops["deadline"] < margin.stops["deadline"]
    assert sure.expected_spend_usd > margin.expected_spend_usd


def test_a_spec_confidence_spends_less_when_the_deadline_allows_many_waves() -> None:
    # A 60 s deadline holds dozens of 1 s round trips: every wave asks for even odds of finishing
    # (the margin rule asks for more), so fewer requests are in flight when K pass, and it takes
    # longer. What the candidate cap allows to deliver is the same.
    one = [dataclasses.replace(outlook("a", 0.001, 5.0, 5.0, learned=True), latency_s=1.0)]
    ample = JobPlan(deliver=6, budget_usd=1.0, deadline_s=60.0, candidate_cap=24, concurrency=16)
    margin = forecast(ample, one, seed=1, simulations=2000)
    cheap = forecast(confident(ample, 0.99), one, seed=1, simulations=2000)
    assert cheap.expected_spend_usd < 0.95 * margin.expected_spend_usd
    assert cheap.expected_wall_s > margin.expected_wall_s
    assert cheap.p_deliver == pytest.approx(margin.p_deliver, abs=0.01)


def test_scoring_holds_the_request_slot_but_not_the_providers() -> None:
    # K=8 sure passes, four at once, 0.5 s each, 0.25 s to score each: on a hosted API every round
    # of four waits for its verdicts (0.75 s a round, not 0.5); a one-slot box is free again as
    # each image arrives, so its queue of 0.5 s runs hides all scoring but the last candidate's.
    sure = dataclasses.replace(outlook("api", 0.001, 1000.0, 0.001), failure_rate=0.0)
    job = JobPlan(deliver=8, budget_usd=1.0, deadline_s=600.0, candidate_cap=16, concurrency=4)
    scored = dataclasses.replace(job, score_s=0.25)
    hosted, hosted_scored = (forecast(j, [sure], seed=1, simulations=400) for j in (job, scored))
    assert hosted_scored.score_s == 0.25 and hosted.score_s == 0.0
    assert hosted_scored.expected_wall_s == pytest.approx(hosted.expected_wall_s * 1.5, rel=0.1)
    box = dataclasses.replace(sure, slots=1)
    queued, queued_scored = (forecast(j, [box], seed=1, simulations=400) for j in (job, scored))
    assert queued_scored.expected_wall_s == pytest.approx(queued.expected_wall_s + 0.25, rel=0.03)
    assert queued_scored.expected_candidates == queued.expected_candidates


def test_a_list_priced_provider_widens_the_billed_spend_not_the_requests() -> None:
    steady = [outlook("only", 0.002, 9.0, 1.0)]
    risky = [dataclasses.replace(steady[0], price_sigma=LIST_PRICE_SIGMA)]
    calm = forecast(plan(10.0), steady, simulations=3000, seed=5)
    moved = forecast(plan(10.0), risky, simulations=3000, seed=5)
    # An ample budget: the bill moves the spend, the funnel buys as many requests as before.
    assert moved.expected_candidates == pytest.approx(calm.expected_candidates, rel=0.03)
    assert moved.p_deliver == pytest.approx(calm.p_deliver, abs=0.02)
    # One bill factor per job, exp(σ |z|): bills only rise, so the median moves by about
    # exp(0.674 σ), the half-normal's median, and the p95 by less than exp(1.96 σ), its 95th
    # percentile (the spend had a spread of its own).
    median = moved.spend_p50_usd / calm.spend_p50_usd
    assert 1.1 < median < 1.25
    ratio = moved.spend_p95_usd / calm.spend_p95_usd
    assert 1.2 < ratio < math.exp(1.96 * LIST_PRICE_SIGMA)


def test_a_bill_above_the_quote_stops_a_tight_budget_sooner() -> None:
    steady = [outlook("only", 0.002, 9.0, 1.0)]
    risky = [dataclasses.replace(steady[0], price_sigma=0.5)]
    budget = forecast(plan(math.inf), steady, simulations=2000, seed=2).spend_p50_usd
    calm = forecast(plan(budget), steady, simulations=2000, seed=2)
    moved = forecast(plan(budget), risky, simulations=2000, seed=2)
    assert moved.stops["budget"] > calm.stops["budget"] + 0.05
    assert moved.p_deliver < calm.p_deliver - 0.05
    # The guard refuses on what it holds (the expected price); a bill above it lands after the
    # purchase, so the requests in flight may take the spend past the budget, as they can in a job.
    assert moved.spend_p95_usd > calm.spend_p95_usd


def test_without_a_price_risk_the_draws_are_what_they_were() -> None:
    explicit = [dataclasses.replace(o, price_sigma=0.0) for o in MARKET]
    assert forecast(plan(0.05), explicit, seed=3) == forecast(plan(0.05), MARKET, seed=3)


def test_only_an_adapter_quoting_a_list_price_carries_a_price_risk() -> None:
    from imagefunnel.providers.fal import FalProvider
    from imagefunnel.providers.openai_images import OpenAIImagesProvider
    from imagefunnel.providers.replicate import ReplicateProvider
    from imagefunnel.providers.together import TogetherProvider

    for listed in (ReplicateProvider, TogetherProvider, OpenAIImagesProvider):
        assert price_risk(listed) == LIST_PRICE_SIGMA
    assert price_risk(FalProvider) == 0.0  # fal's adapter reads the live price
    assert price_risk(None) == 0.0


def test_a_list_priced_provider_that_bills_its_quote_sheds_the_price_risk() -> None:
    from imagefunnel.providers.base import PriceUnit, Quote

    @dataclasses.dataclass
    class Listed:
        name: str
        quotes_list_price: bool = True

    clock = [0.0]
    book = PriceBook(clock=lambda: clock[0], drift_half_life_s=120.0)
    steady, wandering = Listed("steady"), Listed("wandering")
    assert price_risk(steady, model="m", prices=book) == LIST_PRICE_SIGMA  # no bill yet: the prior
    for i in range(40):
        clock[0] = float(i)
        book.observe_charge(Quote("steady", "m", 0.01, PriceUnit.PER_IMAGE, 0.01), 0.01)
        # Bills 0.6x to 1.6x the quote, alternating: a spread no drift explains.
        book.observe_charge(
            Quote("wandering", "m", 0.01, PriceUnit.PER_IMAGE, 0.01), 0.016 if i % 2 else 0.006
        )
    calm = price_risk(steady, model="m", prices=book)
    wild = price_risk(wandering, model="m", prices=book)
    assert calm < LIST_PRICE_SIGMA / 2
    assert wild > LIST_PRICE_SIGMA
    # Unconfirmed, the steady bills fade and the prior comes back.
    clock[0] += 10 * 120.0
    assert price_risk(steady, model="m", prices=book) == pytest.approx(LIST_PRICE_SIGMA, rel=0.01)


def test_a_quote_prices_each_provider_at_its_learned_drift() -> None:
    clock = [0.0]
    book = PriceBook(clock=lambda: clock[0])
    quote = Quote("only", "m", 0.002, PriceUnit.PER_IMAGE, 0.002)
    book.observe_charge(quote, 0.003)  # billed 1.5 x its quote
    base = option("only", 0.002, 0.9)
    drifted = Option("only", "m", book.priced(quote, 0.0), base.pass_rate, base.health, 0.5)
    plain = ProviderOutlook.from_option(base, time_left_s=600.0, learned=True, latency_s=0.5)
    learned = ProviderOutlook.from_option(drifted, time_left_s=600.0, learned=True, latency_s=0.5)
    assert learned.quoted_usd == plain.quoted_usd == 0.002
    assert learned.expected_usd == pytest.approx(0.003)
    at_list = forecast(plan(10.0), [plain], seed=1)
    at_drift = forecast(plan(10.0), [learned], seed=1)
    assert at_drift.expected_spend_usd == pytest.approx(1.5 * at_list.expected_spend_usd)
    assert at_drift.spend_p95_usd == pytest.approx(1.5 * at_list.spend_p95_usd)
