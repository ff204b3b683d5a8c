"""Router decision latency with many requests in flight.

A closed loop of ``in_flight`` workers keeps that many ``Router.generate`` calls outstanding against
the simulated market (virtual time, so provider latency costs no wall time) until ``requests``
have been routed. Each decision (capability filter, price-book lookup, pass-rate posteriors, health,
policy ranking) is timed with ``perf_counter`` inside the router; the first ``in_flight`` decisions
(the ramp-up) are dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from imagefunnel.bench.results import percentile
from imagefunnel.bench.simrun import RouterBuyer, _Aliased, served_by
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.bench.workload import JobTicket, Workload
from imagefunnel.market.engine import Market
from imagefunnel.market.scenario import Scenario
from imagefunnel.routing import CostPerAcceptedPolicy, NullLedger, PassRateBook, PriceBook, Router

__all__ = ["DecisionLatency", "measure_decisions"]


@dataclass(frozen=True, slots=True)
class DecisionLatency:
    in_flight: int
    decisions: int
    p50_us: float
    p99_us: float
    max_in_flight: int


async def _measure(scenario: Scenario, workload: Workload, in_flight: int, requests: int) -> DecisionLatency:
    loop = asyncio.get_running_loop()
    market = Market(scenario, clock=loop.time)
    providers = [_Aliased(market, name, model=workload.model) for name in served_by(scenario)]
    router = Router(
        providers,
        ledger=NullLedger(),
        clock=loop.time,
        policy=CostPerAcceptedPolicy(seed=workload.seed),
        pass_rates=PassRateBook(clock=loop.time),
        prices=PriceBook(clock=loop.time),
    )
    buyer = RouterBuyer(router, job_budget_usd=1e9)
    counter = itertools.count()
    outstanding = 0
    peak = 0

    async def worker() -> None:
        nonlocal outstanding, peak
        while (n := next(counter)) < requests:
            ticket = JobTicket(f"job{n % 100:04d}", 1, loop.time() + 3600.0, workload.use_case)
            outstanding += 1
            peak = max(peak, outstanding)
            bought = await buyer.buy(workload.request(n % 100, n), ticket)
            outstanding -= 1
            if bought is not None:
                buyer.observe(bought, workload.use_case, passed=n % 3 != 0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    times = list(router.decision_times)[in_flight:]
    return DecisionLatency(
        in_flight=in_flight,
        decisions=len(times),
        p50_us=percentile(times, 50) * 1e6,
        p99_us=percentile(times, 99) * 1e6,
        max_in_flight=peak,
    )


def measure_decisions(
    scenario: Scenario, workload: Workload, *, in_flight: int = 1000, requests: int = 20_000
) -> DecisionLatency:
    return run_virtual(_measure(scenario, workload, in_flight, requests))
