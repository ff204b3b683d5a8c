"""One policy against one scenario in virtual time: the real Router over :class:`SimProvider`\\ s.

Each run gets a fresh market built from the same scenario (so every policy faces the same prices,
outages and per-request fates), a fresh router (nothing learned carries over between policies), and
the same workload and verdict model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import defaultdict
from dataclasses import dataclass

from imagefunnel.bench.oracle import ScenarioHindsight
from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.sim import SimProvider
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.bench.verdicts import ScorerCalibration, VerdictModel
from imagefunnel.bench.workload import Bought, JobTicket, Workload, run_workload
from imagefunnel.errors import NoProviderAvailable
from imagefunnel.market.engine import Market
from imagefunnel.market.scenario import Scenario
from imagefunnel.providers.base import Capabilities, GenerationRequest
from imagefunnel.routing import (
    BudgetGuard,
    CheapestPerCallPolicy,
    CostPerAcceptedPolicy,
    HealthProber,
    HedgeSettings,
    NullLedger,
    OraclePolicy,
    PassRateBook,
    Policy,
    PriceBook,
    RoundRobinPolicy,
    RouteContext,
    Router,
    SinglePolicy,
)

__all__ = ["BLIND", "POLICIES", "RouterBuyer", "SimSetup", "policies_for", "run_policy", "served_by"]

POLICIES = (
    "single",
    "round_robin",
    "cheapest_per_call",
    "cost_per_accepted",
    "cost_per_accepted+hedge",
    "oracle",
)
# The default policy on the router without its capacity model (no queue wait in the expected
# latency, no admission by expected completion): the baseline where a provider has slots.
BLIND = "cost_per_accepted+blind"
# Long enough for any request still running at the end of the workload to finish and be billed.
_DRAIN_S = 3600.0


@dataclass(frozen=True, slots=True)
class SimSetup:
    scenario: Scenario
    workload: Workload
    calibration: ScorerCalibration
    single_provider: str
    seed: int = 0
    probe_interval_s: float = 10.0
    job_budget_usd: float = 1_000.0


def policies_for(scenario: Scenario) -> tuple[str, ...]:
    """Every policy, and the capacity-blind router next to the default where a provider has slots."""
    if any(profile.slots is not None for profile in scenario.providers):
        return (*POLICIES, BLIND)
    return POLICIES


def served_by(scenario: Scenario) -> list[str]:
    """Every provider of the scenario (all of them serve the workload's model, under its own id)."""
    return [profile.name for profile in scenario.providers]


class _Aliased(SimProvider):
    """A SimProvider that serves the workload's model name under the provider's own model id (real
    providers name the same model differently: fal-ai/flux/dev, black-forest-labs/flux-dev...)."""

    def __init__(self, market: Market, name: str, *, model: str) -> None:
        super().__init__(market, name)
        self._alias = model

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({self._alias}), max_width=2048, max_height=2048)


class RouterBuyer:
    """Buys through our Router; each job has its own budget guard, like the funnel."""

    def __init__(self, router: Router, *, job_budget_usd: float) -> None:
        self.router = router
        self._budget_usd = job_budget_usd
        self._budgets: dict[str, BudgetGuard] = {}

    async def buy(self, request: GenerationRequest, ticket: JobTicket) -> Bought | None:
        budget = self._budgets.setdefault(ticket.job_id, BudgetGuard(self._budget_usd))
        ctx = RouteContext(
            job_id=ticket.job_id,
            wave=ticket.wave,
            deadline=ticket.deadline,
            budget=budget,
            use_case=ticket.use_case,
        )
        try:
            generation = await self.router.generate(request, ctx)
        except NoProviderAvailable:
            return None
        return Bought(generation.provider, generation.model, generation.provider_request_id)

    def observe(self, bought: Bought, use_case: str, passed: bool) -> None:
        self.router.observe_verdict(bought.provider, bought.model, use_case, passed)


def make_policy(name: str, setup: SimSetup, request: GenerationRequest) -> Policy:
    base = name.split("+", 1)[0]
    if base == "single":
        return SinglePolicy(setup.single_provider)
    if base == "round_robin":
        return RoundRobinPolicy()
    if base == "cheapest_per_call":
        return CheapestPerCallPolicy()
    if base == "cost_per_accepted":
        return CostPerAcceptedPolicy(seed=setup.seed)
    if base == "oracle":
        return OraclePolicy(ScenarioHindsight(setup.scenario, setup.calibration, request=request))
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def run_policy(name: str, setup: SimSetup) -> PolicyResult:
    """Run the whole workload with policy ``name`` in virtual time."""
    started = time.perf_counter()
    result = run_virtual(_run(name, setup))
    return dataclasses.replace(result, wall_s=time.perf_counter() - started)


async def _run(name: str, setup: SimSetup) -> PolicyResult:
    loop = asyncio.get_running_loop()
    workload = setup.workload
    market = Market(setup.scenario, clock=loop.time)
    providers = [_Aliased(market, p, model=workload.model) for p in served_by(setup.scenario)]
    router = Router(
        providers,
        ledger=NullLedger(),
        clock=loop.time,
        policy=make_policy(name, setup, workload.request(0, 0)),
        pass_rates=PassRateBook(clock=loop.time),
        prices=PriceBook(clock=loop.time),
        hedging=HedgeSettings() if name.endswith("+hedge") else None,
        seed=setup.seed,
        capacity_aware=name != BLIND,
    )
    prober = HealthProber(providers, router.health, interval_s=setup.probe_interval_s)
    prober.start()
    verdicts = VerdictModel(setup.calibration, seed=setup.seed)
    jobs_by_provider = {p.name: p.jobs for p in providers}

    def judge(bought: Bought) -> bool:
        return verdicts.passed(jobs_by_provider[bought.provider][bought.provider_request_id].truth)

    try:
        jobs = await run_workload(workload, RouterBuyer(router, job_budget_usd=setup.job_budget_usd), judge)
    finally:
        await prober.aclose()
    market.advance(_DRAIN_S)
    billing = market.billing()
    by_provider: dict[str, float] = defaultdict(float)
    for record in billing:
        by_provider[record.provider] += record.usd
    return PolicyResult(
        name=name,
        jobs=tuple(jobs),
        spend_usd=math.fsum(record.usd for record in billing),
        billed_requests=len(billing),
        spend_by_provider=dict(by_provider),
        before_retry_after=sum(stats.before_retry_after for stats in market.stats().values()),
        ledger_usd=router.spend.charged_usd,
        hedges=router.hedges,
    )
