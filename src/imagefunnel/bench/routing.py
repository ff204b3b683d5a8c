"""``imagefunnel bench routing``: every policy and LiteLLM's strategies, side by side, one scenario.

Steps: measure the scorer's catch rate on rendered market images (calibration), run each policy and
each LiteLLM strategy on the same scenario and workload in virtual time (in parallel processes:
runs share nothing), where the scenario has faults run the default policy once more on the same
scenario with its faults stripped (``bench.fault_free``: the job latency the faults cost), measure router decision latency with 1,000 requests in flight, and, optionally,
run a small slice end to end over HTTP with real rendering and scoring next to the same slice
simulated. The result is a :class:`RoutingReport`; :mod:`imagefunnel.bench.report` prints it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from imagefunnel.bench.bound import lp_bound, price_floor
from imagefunnel.bench.decision import DecisionLatency, measure_decisions
from imagefunnel.bench.fault_free import has_faults, without_faults
from imagefunnel.bench.litellm_baseline import LITELLM_STRATEGIES, litellm_available, run_litellm
from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.sim import expected_usd
from imagefunnel.bench.simrun import SimSetup, policies_for, run_policy
from imagefunnel.bench.verdicts import ScorerCalibration, calibrate_scorer, scenario_defects
from imagefunnel.bench.workload import Workload
from imagefunnel.market.scenario import Scenario

__all__ = ["DEFAULT_POLICY", "Dispersion", "RoutingReport", "dispersion", "run_routing_bench"]

# The router's default policy: the one the targets are about, and the one run without faults.
DEFAULT_POLICY = "cost_per_accepted"


@dataclass(frozen=True, slots=True)
class Dispersion:
    """The market's price spread per megapixel, time-averaged over the workload's span."""

    single_usd_per_mp: float
    cheapest_usd_per_mp: float
    horizon_s: float


@dataclass(frozen=True, slots=True)
class RoutingReport:
    scenario: str
    workload: Workload
    calibration: ScorerCalibration
    dispersion: Dispersion
    single_provider: str
    policies: tuple[PolicyResult, ...]
    litellm: tuple[PolicyResult, ...]
    decisions: DecisionLatency | None
    e2e: tuple[tuple[PolicyResult, PolicyResult], ...] = field(default=())  # (over HTTP, simulated)
    command: str = ""
    machine: str = ""
    # No policy that delivers every image can expect to pay less per delivered image
    # (``bench.bound.lp_bound``: capacity and timing counted); nan if unknown.
    lower_bound_usd: float = math.nan
    # The looser floor that ignores capacity and timing (``bench.bound.price_floor``), kept to show
    # what capacity and timing add.
    price_floor_usd: float = math.nan
    # ``DEFAULT_POLICY`` on the same scenario and workload with the faults stripped (None: the
    # scenario has no faults, or the run was skipped).
    fault_free: PolicyResult | None = None

    def to_bound(self, name: str) -> float:
        """``name``'s cost per delivered image over the lower bound."""
        found = self.result(name)
        if found is None or not self.lower_bound_usd > 0:
            return math.nan
        return found.cost_per_delivered / self.lower_bound_usd

    def result(self, name: str) -> PolicyResult | None:
        return next((r for r in (*self.policies, *self.litellm) if r.name == name), None)

    def ratio(self, name: str, to: str) -> float:
        a, b = self.result(name), self.result(to)
        if a is None or b is None or b.cost_per_delivered <= 0:
            return math.nan
        return a.cost_per_delivered / b.cost_per_delivered

    @property
    def best_litellm(self) -> PolicyResult | None:
        return min(self.litellm, key=lambda r: r.cost_per_delivered, default=None)


def dispersion(scenario: Scenario, workload: Workload, *, single: str, step_s: float = 10.0) -> Dispersion:
    """Time-averaged list price of ``single`` and of the cheapest provider not in an outage."""
    request = workload.request(0, 0)
    horizon = workload.jobs * workload.interarrival_s + workload.deadline_s / 3
    steps = max(1, int(horizon / step_s))
    single_sum = cheapest_sum = 0.0
    for i in range(steps):
        t = i * step_s
        prices = {
            p.name: expected_usd(p, p.price_at(t), request) / request.megapixels
            for p in scenario.providers
            if not p.outage_at(t)
        }
        single_sum += expected_usd(scenario.provider(single), scenario.provider(single).price_at(t), request)
        cheapest_sum += min(prices.values()) if prices else math.nan
    return Dispersion(single_sum / steps / request.megapixels, cheapest_sum / steps, horizon)


def _run_one(task: tuple[str, str, SimSetup]) -> PolicyResult:
    kind, name, setup = task
    return run_litellm(name, setup) if kind == "litellm" else run_policy(name, setup)


_FAULT_FREE = "fault_free"


def run_routing_bench(
    scenario: Scenario,
    workload: Workload,
    *,
    single_provider: str | None = None,
    policies: Sequence[str] | None = None,
    litellm: bool = True,
    calibration_samples: int = 8,
    decisions_in_flight: int = 1000,
    decisions: int = 20_000,
    workers: int = 2,
    seed: int = 0,
    fault_free: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
) -> RoutingReport:
    single = single_provider or scenario.providers[0].name
    progress(f"calibrating the scorer: {calibration_samples} rendered images per label")
    calibration = calibrate_scorer(
        scenario_defects(scenario),
        samples=calibration_samples,
        width=workload.width,
        height=workload.height,
        seed=seed,
    )
    setup = SimSetup(scenario, workload, calibration, single_provider=single, seed=seed)
    tasks = [("policy", name, setup) for name in (policies_for(scenario) if policies is None else policies)]
    if litellm and litellm_available():
        tasks += [("litellm", name, setup) for name in LITELLM_STRATEGIES]
    elif litellm:
        progress("LiteLLM baseline skipped: install the 'bench' extra (litellm, time-machine)")
    if fault_free and has_faults(scenario):
        # Same seed, workload, calibration and single provider: only the faults differ.
        clean = dataclasses.replace(setup, scenario=without_faults(scenario))
        tasks.append((_FAULT_FREE, DEFAULT_POLICY, clean))
    progress(
        f"running {len(tasks)} policies on {workload.jobs} jobs × {workload.deliver} ({workers} processes)"
    )
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            everything = list(pool.map(_run_one, tasks))
    else:
        everything = [_run_one(task) for task in tasks]
    results = [r for (kind, _, _), r in zip(tasks, everything, strict=True) if kind != _FAULT_FREE]
    clean_run = next(
        (r for (kind, _, _), r in zip(tasks, everything, strict=True) if kind == _FAULT_FREE), None
    )
    for result in results:
        progress(
            f"  {result.name}: ${result.cost_per_delivered:.4f} per delivered image ({result.wall_s:.0f} s)"
        )
    if clean_run is not None:
        progress(f"  {clean_run.name} without faults: job p99 {clean_run.job_seconds(99):.0f} s")
    latency = None
    if decisions_in_flight > 0:
        progress(f"decision latency: {decisions:,} requests, {decisions_in_flight:,} in flight")
        latency = measure_decisions(scenario, workload, in_flight=decisions_in_flight, requests=decisions)
    return RoutingReport(
        scenario=scenario.name,
        workload=workload,
        calibration=calibration,
        dispersion=dispersion(scenario, workload, single=single),
        single_provider=single,
        policies=tuple(r for r in results if not r.name.startswith("litellm:")),
        litellm=tuple(r for r in results if r.name.startswith("litellm:")),
        decisions=latency,
        machine=_machine(),
        lower_bound_usd=lp_bound(scenario, workload, calibration),
        price_floor_usd=price_floor(scenario, workload, calibration),
        fault_free=clean_run,
    )


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return f"{os.cpu_count()} CPUs ({platform.machine()}), load average {load:.1f}, Python {platform.python_version()}"
