import asyncio
import time
from collections.abc import Callable

import pytest

from imagefunnel.errors import (
    BadOutput,
    BudgetExceeded,
    NoProviderAvailable,
    ProviderUnavailable,
    RateLimited,
)
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.routing import (
    BreakerSettings,
    BudgetGuard,
    CheapestPerCallPolicy,
    HealthTracker,
    HedgeSettings,
    PassRateBook,
    PassRateKey,
    ProviderTraits,
    RouteContext,
    RouteOptions,
    Router,
    TenantBudgets,
)
from imagefunnel.testing import MockProvider


class Ledger:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], dict[str, object]] = {}

    def begin_attempt(self, *, job_id, request_id, attempt, wave, provider, model, quoted_usd):  # type: ignore[no-untyped-def]
        self.rows[(request_id, attempt)] = {
            "provider": provider,
            "quoted": quoted_usd,
            "status": "dispatched",
        }

    def end_attempt(  # type: ignore[no-untyped-def]
        self,
        *,
        request_id,
        attempt,
        status,
        charged_usd,
        latency_s,
        provider_request_id=None,
        error=None,
        error_type=None,
    ):
        self.rows[(request_id, attempt)].update(status=status, charged=charged_usd, error_type=error_type)


def sells(name: str, price: float):  # type: ignore[no-untyped-def]
    def handler(req: GenerationRequest) -> Generation:
        return Generation(req.request_id, name, req.model, b"img", price, 0.01, f"{name}-{req.request_id}")

    return handler


def ok(name: str, price: float):  # type: ignore[no-untyped-def]
    return MockProvider(sells(name, price), name=name, models=frozenset({"m"}), price_usd=price)


def failing(name: str, price: float, exc_type: type = ProviderUnavailable, **kw):  # type: ignore[no-untyped-def]
    def handler(req: GenerationRequest) -> Generation:
        raise exc_type("boom", provider=name, **kw)

    return MockProvider(handler, name=name, models=frozenset({"m"}), price_usd=price)


def failing_on(name: str, price: float, fails: Callable[[int], bool], message: str) -> MockProvider:
    """Sells at ``price`` except on the calls (counted from 1) for which ``fails`` is true: those
    raise ProviderUnavailable(``message``)."""
    provider: MockProvider

    def handler(req: GenerationRequest) -> Generation:
        if fails(len(provider.calls)):
            raise ProviderUnavailable(message, provider=name)
        return Generation(req.request_id, name, req.model, b"img", price, 0.01, f"{name}-{req.request_id}")

    provider = MockProvider(handler, name=name, models=frozenset({"m"}), price_usd=price)
    return provider


def hanging(name: str, price: float) -> MockProvider:
    async def hang(req: GenerationRequest) -> Generation:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    return MockProvider(hang, name=name, models=frozenset({"m"}), price_usd=price)


def ctx(**kw) -> RouteContext:  # type: ignore[no-untyped-def]
    return RouteContext(job_id="j", wave=1, deadline=1e12, **kw)


def req(i: int = 0, model: str = "m") -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", model=model, prompt="p")


def cheapest(providers, **kw) -> Router:  # type: ignore[no-untyped-def]
    return Router(providers, policy=CheapestPerCallPolicy(), **kw)


async def test_cheapest_healthy_provider_wins_and_the_ledger_has_quote_and_charge() -> None:
    ledger = Ledger()
    gen = await cheapest([ok("dear", 0.03), ok("cheap", 0.01)], ledger=ledger).generate(req(), ctx())
    assert gen.provider == "cheap"
    assert ledger.rows[("r0", 1)] == {
        "provider": "cheap",
        "quoted": 0.01,
        "status": "succeeded",
        "charged": 0.01,
        "error_type": None,
    }


async def test_failure_falls_back_to_the_next_and_the_ledger_shows_both() -> None:
    ledger = Ledger()
    router = cheapest([failing("cheap", 0.01), ok("dear", 0.03)], ledger=ledger)
    gen = await router.generate(req(), ctx())
    assert gen.provider == "dear"
    assert ledger.rows[("r0", 1)]["error_type"] == "ProviderUnavailable"
    assert ledger.rows[("r0", 2)]["status"] == "succeeded"
    (line_cheap,) = [line for line in router.spend_report(by="provider") if line.key == "cheap"]
    assert (line_cheap.attempts, line_cheap.succeeded, line_cheap.charged_usd) == (1, 0, 0.0)


async def test_billed_garbage_is_charged_and_counts_against_the_pass_rate() -> None:
    ledger = Ledger()
    rates = PassRateBook(clock=lambda: 0.0)
    router = cheapest(
        [failing("cheap", 0.01, BadOutput, charged_usd=0.01), ok("dear", 0.03)],
        ledger=ledger,
        pass_rates=rates,
    )
    budget = BudgetGuard(1.0)
    await router.generate(req(), ctx(budget=budget, use_case="headshot"))
    assert ledger.rows[("r0", 1)]["charged"] == 0.01
    assert budget.settled_usd == pytest.approx(0.04)
    assert budget.reserved_usd == pytest.approx(0.0)
    assert rates.get(PassRateKey("cheap", "m", "headshot")).beta == pytest.approx(2.0)


async def test_all_failing_raises_no_provider_with_each_error() -> None:
    router = cheapest([failing("a", 0.01), failing("b", 0.02)], ledger=Ledger())
    with pytest.raises(
        NoProviderAvailable, match=r"ProviderUnavailable: a: boom.*ProviderUnavailable: b: boom"
    ):
        await router.generate(req(), ctx())


async def test_capability_and_permission_filters() -> None:
    router = Router([ok("a", 0.01), ok("b", 0.02)], ledger=Ledger())
    gen = await router.generate(req(), ctx(permits=lambda name: name != "a"))
    assert gen.provider == "b"
    with pytest.raises(NoProviderAvailable, match="capable"):
        await router.generate(req(model="other"), ctx())


async def test_verdicts_steer_the_default_policy_to_the_provider_that_passes() -> None:
    router = Router([ok("trap", 0.010), ok("good", 0.015)], ledger=Ledger(), seed=1)
    for _ in range(60):
        router.observe_verdict("trap", "m", "headshot", False)
        router.observe_verdict("good", "m", "headshot", True)
    picks = [(await router.generate(req(i), ctx(use_case="headshot"))).provider for i in range(20)]
    assert picks.count("good") == 20
    # Another use case has learned nothing: the cheaper one is at least tried.
    others = [(await router.generate(req(100 + i), ctx(use_case="product"))).provider for i in range(20)]
    assert "trap" in others


async def test_a_tripped_breaker_is_skipped_until_it_half_opens() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], breaker=BreakerSettings(consecutive_failures=2, open_s=10))
    bad, good = failing("bad", 0.01), ok("good", 0.05)
    router = cheapest([bad, good], ledger=Ledger(), clock=lambda: now[0], health=health)
    for i in range(2):
        await router.generate(req(i), ctx())
    assert len(bad.calls) == 2
    await router.generate(req(3), ctx())
    assert len(bad.calls) == 2, "an open breaker is not called"
    now[0] = 11.0
    await router.generate(req(4), ctx())
    assert len(bad.calls) == 3, "half-open: one trial request goes through"


async def test_one_transient_5xx_does_not_fail_a_request_while_the_others_are_throttled() -> None:
    throttled = failing("throttled", 0.005, RateLimited, retry_after_s=3600.0)
    flaky = failing_on("flaky", 0.01, lambda call: call == 1, "HTTP 503")
    router = cheapest([throttled, flaky], ledger=Ledger())
    # throttled (cheapest) answers 429 for an hour, flaky then fails once with a 503.
    generation = await router.generate(
        req(0), RouteContext(job_id="j", wave=1, deadline=time.monotonic() + 10)
    )
    assert generation.provider == "flaky"
    assert len(flaky.calls) == 2
    assert len(throttled.calls) == 1


async def test_a_lone_5xx_from_the_best_provider_is_retried_there_not_failed_over() -> None:
    dear = ok("dear", 0.03)
    steady = failing_on("steady", 0.018, lambda call: call == 2, "HTTP 500")
    router = cheapest([steady, dear], ledger=Ledger())
    await router.generate(req(0), ctx())  # steady has been delivering
    generation = await router.generate(req(1), ctx())
    # One 500 from a provider that delivers is an outlier: a short backoff and the same, cheaper
    # provider again, not a failover to the dearer one.
    assert generation.provider == "steady"
    assert len(steady.calls) == 3
    assert not dear.calls


async def test_a_provider_failing_again_lately_is_failed_over_at_once() -> None:
    dear = ok("dear", 0.03)
    steady = failing_on("steady", 0.018, lambda call: call > 1, "HTTP 503")
    router = cheapest([steady, dear], ledger=Ledger())
    await router.generate(req(0), ctx())
    generation = await router.generate(req(1), ctx())
    # The first 503 is retried in place; the second, a failure lately, fails over at once.
    assert generation.provider == "dear"
    assert len(steady.calls) == 3
    assert len(dear.calls) == 1


async def test_transient_retries_are_bounded() -> None:
    router = cheapest([failing("a", 0.01)], ledger=Ledger())
    with pytest.raises(NoProviderAvailable):
        await router.generate(req(), ctx())
    assert len(router._providers["a"].calls) == 3  # type: ignore[attr-defined]  # first try + two retries


async def test_rate_limit_honours_retry_after() -> None:
    now = [0.0]
    limited = failing("limited", 0.01, RateLimited, retry_after_s=30.0)
    router = cheapest([limited, ok("other", 0.02)], ledger=Ledger(), clock=lambda: now[0])
    await router.generate(req(0), ctx())
    assert router.health.cooldown_remaining_s("limited", "m") == pytest.approx(30.0)
    await router.generate(req(1), ctx())
    assert len(limited.calls) == 1


async def test_job_and_tenant_budgets_refuse_before_buying() -> None:
    provider = ok("a", 0.4)
    router = Router([provider], ledger=Ledger())
    budget = BudgetGuard(1.0)
    await router.generate(req(0), ctx(budget=budget))
    await router.generate(req(1), ctx(budget=budget))
    with pytest.raises(
        BudgetExceeded, match=r"budget \$1.0000: \$0.8000 committed, next request quoted \$0.4000"
    ):
        await router.generate(req(2), ctx(budget=budget))
    tenants = TenantBudgets({"acme": 0.5})
    await router.generate(req(3), ctx(budget=BudgetGuard(10.0), tenant_budget=tenants.guard("acme")))
    job = BudgetGuard(10.0)
    with pytest.raises(BudgetExceeded):
        await router.generate(req(4), ctx(budget=job, tenant_budget=tenants.guard("acme")))
    assert job.committed_usd == 0.0, "the job's reservation is released when the tenant refuses"
    assert len(provider.calls) == 3
    with pytest.raises(BudgetExceeded, match="no budget"):
        tenants.guard("nobody")


async def test_hung_provider_times_out_and_falls_back() -> None:
    ledger = Ledger()
    router = cheapest([hanging("slow", 0.001), ok("fast", 0.02)], ledger=ledger, request_timeout_s=0.2)
    gen = await router.generate(req(), ctx())
    assert gen.provider == "fast"
    assert ledger.rows[("r0", 1)]["error_type"] == "ProviderTimeout"


async def test_timeout_never_runs_past_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    router = cheapest([hanging("slow", 0.001)], ledger=Ledger(), clock=loop.time, request_timeout_s=60)
    with pytest.raises(NoProviderAvailable, match="ProviderTimeout"):
        await router.generate(req(), RouteContext(job_id="j", wave=1, deadline=loop.time() + 0.1))


async def test_hedged_request_wins_after_the_primary_p95_and_the_loser_is_cancelled() -> None:
    ledger = Ledger()
    slow, fast = hanging("slow", 0.01), ok("fast", 0.02)
    router = cheapest([slow, fast], ledger=ledger, hedging=HedgeSettings(max_fraction=1.0))
    for _ in range(10):  # the primary usually answers in 50 ms
        router.health.record_success("slow", 0.05, model="m")
    gen = await router.generate(req(), ctx())
    assert gen.provider == "fast"
    assert router.hedges == 1
    assert ledger.rows[("r0", 1)]["status"] == "cancelled"
    assert ledger.rows[("r0", 1)]["charged"] == 0.01, "a cancelled attempt is charged its quote (upper bound)"
    assert ledger.rows[("r0", 2)]["status"] == "succeeded"


async def test_no_hedge_without_latency_history() -> None:
    router = cheapest([ok("a", 0.01), ok("b", 0.02)], ledger=Ledger(), hedging=HedgeSettings())
    await router.generate(req(), ctx())
    assert router.hedges == 0


async def test_a_provider_whose_quotes_fail_is_not_asked_again_while_its_breaker_is_open() -> None:
    now = [0.0]

    class Down(MockProvider):
        quotes = 0

        async def quote(self, request: GenerationRequest):  # type: ignore[no-untyped-def]
            Down.quotes += 1
            raise ProviderUnavailable("pricing 503", provider=self.name)

    down = Down(lambda r: None, name="down", models=frozenset({"m"}))  # type: ignore[arg-type,return-value]
    router = Router([down, ok("up", 0.02)], ledger=Ledger(), clock=lambda: now[0])
    for i in range(10):
        now[0] += 10.0  # every quote is stale by then
        assert (await router.generate(req(i), ctx())).provider == "up"
    # Three failed quotes (t=10, 20, 30) open its breaker for 5 s; after that it is asked only when
    # the breaker half-opens, each failure doubling the wait: t=40, 50, 70 (next: 110).
    assert Down.quotes == 6


# -- the public decision: Router.options ------------------------------------------------------
def close_race() -> list[MockProvider]:
    # Prices near enough that the default policy's Thompson draw decides the order, seed by seed.
    return [ok("a", 0.010), ok("b", 0.011), ok("c", 0.012)]


async def test_options_rank_as_the_routers_own_first_decision_does() -> None:
    firsts = []
    for seed in range(12):
        asked = await Router(close_race(), ledger=Ledger(), seed=seed).options(req(), ctx())
        ledger = Ledger()
        bought = await Router(close_race(), ledger=ledger, seed=seed).generate(req(), ctx())
        assert asked.ranked[0].provider == bought.provider == ledger.rows[("r0", 1)]["provider"]
        assert sorted(o.provider for o in asked.ranked) == ["a", "b", "c"] and asked.wait_s is None
        firsts.append(bought.provider)
    assert len(set(firsts)) > 1, "the draw must matter here, or this test could not tell a difference"


async def test_options_are_the_policys_order_without_the_providers_already_tried() -> None:
    router = cheapest([ok("dear", 0.03), ok("cheap", 0.01), ok("mid", 0.02)], ledger=Ledger())
    asked = await router.options(req(), ctx())
    assert [(o.provider, o.quoted_usd) for o in asked.ranked] == [
        ("cheap", 0.01),
        ("mid", 0.02),
        ("dear", 0.03),
    ]
    left = await router.options(req(), ctx(), tried={"cheap"})
    assert [o.provider for o in left.ranked] == ["mid", "dear"]
    assert [o.provider for o in (await router.options(req(), ctx(permits=lambda n: n != "mid"))).ranked] == [
        "cheap",
        "dear",
    ]


async def test_options_say_how_long_to_wait_when_every_provider_cools_and_never_when_none_can() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], breaker=BreakerSettings(consecutive_failures=1, open_s=10))
    router = cheapest([failing("bad", 0.01)], ledger=Ledger(), clock=lambda: now[0], health=health)
    with pytest.raises(NoProviderAvailable):
        await router.generate(req(), RouteContext(job_id="j", wave=1, deadline=5.0))
    cooling = await router.options(req(1), ctx())
    assert cooling.ranked == () and cooling.wait_s == pytest.approx(10.0)
    nobody = await router.options(req(2, model="other"), ctx())
    assert nobody == RouteOptions(ranked=(), wait_s=None)


class Declaring(MockProvider):
    """A provider that says how many requests it runs at once (``DeclaresSlots``)."""

    def __init__(self, name: str, slots: int | None) -> None:
        super().__init__(sells(name, 0.01), name=name, models=frozenset({"m"}))
        self.slots = slots


class ReportingQueue(MockProvider):
    async def estimate(self, request: GenerationRequest) -> object:
        raise AssertionError("not asked here")


def test_slots_come_from_traits_then_what_the_provider_declares_then_a_reported_queue() -> None:
    providers = [
        Declaring("box", 3),
        Declaring("api", None),
        ok("plain", 0.01),
        ReportingQueue(sells("comfy", 0.01), name="comfy", models=frozenset({"m"})),
    ]
    router = Router(providers, ledger=Ledger())
    assert [router.slots(p.name) for p in providers] == [3, None, None, 1]
    overridden = Router(providers, ledger=Ledger(), traits={"box": ProviderTraits(slots=5)})
    assert overridden.slots("box") == 5


class _QuoteFails(MockProvider):
    async def quote(self, request: GenerationRequest):  # type: ignore[no-untyped-def]
        raise ProviderUnavailable("GET /pricing: connect timeout, nothing sent", provider=self.name)


async def test_a_stop_built_from_earlier_failures_names_their_type_as_a_fresh_one_does() -> None:
    # Request r0 trips the breaker (first try and two transient retries); r1 finds the only provider cooling past its deadline and has no
    # failure of its own: its reason quotes what the provider last failed with, type included.
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], breaker=BreakerSettings(consecutive_failures=3, open_s=60))
    router = cheapest([failing("a", 0.01)], ledger=Ledger(), clock=lambda: now[0], health=health)
    with pytest.raises(NoProviderAvailable, match=r"ProviderUnavailable: a: boom"):
        await router.generate(req(0), RouteContext(job_id="j", wave=1, deadline=1e12))
    with pytest.raises(
        NoProviderAvailable, match=r"cooling down.*a last failed: ProviderUnavailable: a: boom"
    ):
        await router.generate(req(1), RouteContext(job_id="j", wave=1, deadline=30.0))


async def test_a_provider_that_cannot_quote_is_named_with_the_type_of_its_failure() -> None:
    quoteless = _QuoteFails(
        lambda r: Generation(r.request_id, "q", r.model, b"", 0.0, 0.0), name="q", models=frozenset({"m"})
    )
    router = cheapest([quoteless], ledger=Ledger())
    with pytest.raises(NoProviderAvailable, match=r"q last failed: ProviderUnavailable: q: GET /pricing"):
        await router.generate(req(), ctx())


async def test_an_attempt_the_router_cuts_off_is_charged_its_quote_unless_the_adapter_says_otherwise() -> (
    None
):
    # A synchronous call cut off mid-flight runs to its end at the provider and is billed there.
    ledger = Ledger()
    router = cheapest([hanging("slow", 0.02)], ledger=ledger, request_timeout_s=0.05)
    with pytest.raises(NoProviderAvailable, match="ProviderTimeout"):
        await router.generate(req(), RouteContext(job_id="j", wave=1, deadline=time.monotonic() + 0.3))
    assert ledger.rows[("r0", 1)]["status"] == "failed"
    assert ledger.rows[("r0", 1)]["charged"] == 0.02


async def test_a_job_out_of_time_names_what_failed_most_not_only_the_last_timeout() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0])
    router = cheapest([failing("spot", 0.01)], ledger=Ledger(), clock=lambda: now[0], health=health)
    await router.options(req(), ctx())  # capabilities loaded, as in a running job
    for _ in range(3):
        health.record_failure("spot", "ProviderUnavailable: spot: the machine was preempted", model="m")
    health.record_failure("spot", "ProviderTimeout: spot: no result within 0.1s", model="m")
    now[0] = 10.0
    with pytest.raises(NoProviderAvailable) as raised:
        await router.generate(req(1), RouteContext(job_id="j", wave=1, deadline=5.0))
    message = str(raised.value)
    assert "spot last failed: ProviderTimeout" in message
    assert "spot failed mostly with (3 of 4): ProviderUnavailable: spot: the machine was preempted" in message
