import math

from imagefunnel.providers.base import PriceUnit, Quote
from imagefunnel.routing import (
    BreakerState,
    CheapestPerCallPolicy,
    CostPerAcceptedPolicy,
    HealthView,
    Option,
    OraclePolicy,
    PassRate,
    PassRateKey,
    PricedQuote,
    RoundRobinPolicy,
    SinglePolicy,
    Situation,
)

FAR = Situation(now=0.0, time_left_s=math.inf, use_case="headshot")


def option(
    name: str,
    usd: float,
    *,
    passed: float = 50,
    failed: float = 50,
    latency: float = 5.0,
    errors: float = 0.0,
) -> Option:
    quote = Quote(name, "m", usd, PriceUnit.PER_IMAGE, usd)
    view = HealthView(BreakerState.CLOSED, errors, latency, None, None, 0, None)
    rate = PassRate(PassRateKey(name, "m", "headshot"), passed, failed, 0.0)
    return Option(name, "m", PricedQuote(quote, 0.0, usd), rate, view, latency)


def names(options: list[Option]) -> list[str]:
    return [o.provider for o in options]


def test_cheapest_per_call_ranks_by_quote_only() -> None:
    ranked = CheapestPerCallPolicy().rank([option("a", 0.03), option("b", 0.01), option("c", 0.02)], FAR)
    assert names(ranked) == ["b", "c", "a"]


def test_cost_per_accepted_prefers_a_dearer_provider_that_passes_more() -> None:
    trap = option("trap", 0.010, passed=30, failed=70)  # $0.033 per accepted
    good = option("good", 0.015, passed=90, failed=10)  # $0.017 per accepted
    policy = CostPerAcceptedPolicy(thompson=False)
    assert names(policy.rank([trap, good], FAR)) == ["good", "trap"]
    assert names(CheapestPerCallPolicy().rank([trap, good], FAR)) == ["trap", "good"]


def test_cost_per_accepted_explores_an_unknown_provider_but_settles_on_the_best() -> None:
    known = option("known", 0.010, passed=900, failed=100)
    unknown = option("unknown", 0.010, passed=2, failed=1)  # the prior: maybe better, maybe worse
    policy = CostPerAcceptedPolicy(seed=3)
    firsts = [policy.rank([known, unknown], FAR)[0].provider for _ in range(400)]
    assert 0 < firsts.count("unknown") < 300, "Thompson sampling tries the unknown, not always"


def test_deadline_penalty_prefers_the_fast_provider_only_near_the_deadline() -> None:
    slow = option("slow", 0.010, latency=20.0)
    fast = option("fast", 0.012, latency=2.0)
    policy = CostPerAcceptedPolicy(thompson=False)
    assert names(policy.rank([slow, fast], Situation(0.0, 3600.0, "x"))) == ["slow", "fast"]
    assert names(policy.rank([slow, fast], Situation(0.0, 25.0, "x"))) == ["fast", "slow"]


def test_errors_count_as_time_in_the_deadline_penalty() -> None:
    flaky = option("flaky", 0.010, latency=5.0, errors=0.8)  # ~25 s per success
    steady = option("steady", 0.011, latency=5.0)
    policy = CostPerAcceptedPolicy(thompson=False)
    assert names(policy.rank([flaky, steady], Situation(0.0, 30.0, "x")))[0] == "steady"


def test_round_robin_rotates_and_keeps_the_rest_as_fallback() -> None:
    policy = RoundRobinPolicy()
    options = [option("a", 0.01), option("b", 0.01), option("c", 0.01)]
    firsts = [names(policy.rank(options, FAR)) for _ in range(3)]
    assert firsts == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]


def test_single_keeps_only_its_provider() -> None:
    options = [option("a", 0.01), option("b", 0.02)]
    assert names(SinglePolicy("b").rank(options, FAR)) == ["b"]
    assert names(SinglePolicy("z").rank(options, FAR)) == []
    assert names(SinglePolicy().rank(options, FAR)) == ["a"]


def test_oracle_ranks_by_hindsight_and_puts_unavailable_last() -> None:
    class Truth:
        def cost_per_accepted(self, provider: str, model: str, now: float) -> float | None:
            return {"a": 0.05, "b": None, "c": 0.02}[provider]

    ranked = OraclePolicy(Truth()).rank([option("a", 0.01), option("b", 0.001), option("c", 0.03)], FAR)
    assert names(ranked) == ["c", "a", "b"]
