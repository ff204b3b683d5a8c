import asyncio

import pytest

from imagefunnel.errors import (
    BadOutput,
    BudgetExceeded,
    NoProviderAvailable,
    ProviderUnavailable,
    RateLimited,
)
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.routing import HealthTracker, RouteContext, Router
from imagefunnel.routing.budget import BudgetGuard
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

    def end_attempt(
        self,
        *,
        request_id,
        attempt,
        status,
        charged_usd,
        latency_s,
        provider_request_id=None,  # type: ignore[no-untyped-def]
        error=None,
        error_type=None,
    ):
        self.rows[(request_id, attempt)].update(status=status, charged=charged_usd, error_type=error_type)


def ok(name: str, price: float):  # type: ignore[no-untyped-def]
    def handler(req: GenerationRequest) -> Generation:
        return Generation(req.request_id, name, req.model, b"img", price, 0.01, f"{name}-{req.request_id}")

    return MockProvider(handler, name=name, models=frozenset({"m"}), price_usd=price)


def failing(name: str, price: float, exc_type: type = ProviderUnavailable, **kw):  # type: ignore[no-untyped-def]
    def handler(req: GenerationRequest) -> Generation:
        raise exc_type("boom", provider=name, **kw)

    return MockProvider(handler, name=name, models=frozenset({"m"}), price_usd=price)


def ctx(**kw) -> RouteContext:  # type: ignore[no-untyped-def]
    return RouteContext(job_id="j", wave=1, deadline=1e12, **kw)


def req(i: int = 0, model: str = "m") -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", model=model, prompt="p")


async def test_cheapest_healthy_provider_wins() -> None:
    cheap, dear = ok("cheap", 0.01), ok("dear", 0.03)
    ledger = Ledger()
    gen = await Router([dear, cheap], ledger=ledger).generate(req(), ctx())
    assert gen.provider == "cheap"
    assert ledger.rows[("r0", 1)] == {
        "provider": "cheap",
        "quoted": 0.01,
        "status": "succeeded",
        "charged": 0.01,
        "error_type": None,
    }


async def test_failure_falls_back_to_next_cheapest_and_ledger_shows_both() -> None:
    ledger = Ledger()
    router = Router([failing("cheap", 0.01), ok("dear", 0.03)], ledger=ledger)
    gen = await router.generate(req(), ctx())
    assert gen.provider == "dear"
    assert ledger.rows[("r0", 1)]["error_type"] == "ProviderUnavailable"
    assert ledger.rows[("r0", 2)]["status"] == "succeeded"


async def test_bad_output_that_was_billed_is_recorded_as_charged() -> None:
    ledger = Ledger()
    router = Router([failing("cheap", 0.01, BadOutput, charged_usd=0.01), ok("dear", 0.03)], ledger=ledger)
    budget = BudgetGuard(1.0)
    await router.generate(req(), ctx(budget=budget))
    assert ledger.rows[("r0", 1)]["charged"] == 0.01
    assert budget.settled_usd == pytest.approx(0.04)
    assert budget.reserved_usd == pytest.approx(0.0)


async def test_all_failing_raises_no_provider_with_each_error() -> None:
    router = Router([failing("a", 0.01), failing("b", 0.02)], ledger=Ledger())
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


async def test_repeated_failures_cool_a_provider_down() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], base_cooldown_s=10, failures_before_cooldown=2)
    bad, good = failing("bad", 0.01), ok("good", 0.05)
    router = Router([bad, good], ledger=Ledger(), clock=lambda: now[0], health=health)
    for i in range(2):
        await router.generate(req(i), ctx())
    assert len(bad.calls) == 2
    await router.generate(req(3), ctx())
    assert len(bad.calls) == 2, "a provider in cooldown must not be called"
    now[0] = 11.0
    await router.generate(req(4), ctx())
    assert len(bad.calls) == 3, "after the cooldown the provider is tried again"


async def test_rate_limit_honours_retry_after() -> None:
    now = [0.0]
    limited = failing("limited", 0.01, RateLimited, retry_after_s=30.0)
    router = Router([limited, ok("other", 0.02)], ledger=Ledger(), clock=lambda: now[0])
    await router.generate(req(0), ctx())
    assert router.health.cooldown_remaining_s("limited") == pytest.approx(30.0)
    await router.generate(req(1), ctx())
    assert len(limited.calls) == 1


async def test_budget_refuses_before_buying() -> None:
    provider = ok("a", 0.4)
    router = Router([provider], ledger=Ledger())
    budget = BudgetGuard(1.0)
    await router.generate(req(0), ctx(budget=budget))
    await router.generate(req(1), ctx(budget=budget))
    with pytest.raises(
        BudgetExceeded, match=r"budget \$1.0000: \$0.8000 committed, next request quoted \$0.4000"
    ):
        await router.generate(req(2), ctx(budget=budget))
    assert len(provider.calls) == 2


async def test_hung_provider_times_out_and_falls_back() -> None:
    async def hang(req: GenerationRequest) -> Generation:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    ledger = Ledger()
    slow = MockProvider(hang, name="slow", models=frozenset({"m"}), price_usd=0.001)
    router = Router([slow, ok("fast", 0.02)], ledger=ledger, request_timeout_s=0.2)
    gen = await router.generate(req(), ctx())
    assert gen.provider == "fast"
    assert ledger.rows[("r0", 1)]["error_type"] == "ProviderTimeout"
