"""Floors on the expected cost per delivered image of a routing benchmark's workload.

Two of them, both computed from the same hindsight the ``oracle`` policy reads
(:class:`~imagefunnel.bench.oracle.ScenarioHindsight`: list price at a moment / true pass rate):

* :func:`price_floor`: each job buys every image at the lowest cost per accepted image any
  provider offers at any moment between its arrival and its deadline. It ignores capacity and
  timing, so it is cheap and loose.
* :func:`lp_bound`: the same prices, but as a linear program in which every provider can take only
  what the market lets it take (its slots, its rate limit), a request must be started while the
  provider is up and early enough to finish by the job's deadline at the provider's fastest, and
  the jobs compete for the same capacity. It is a relaxation of what any policy can do, so no
  policy that delivers every image can expect to pay less per delivered image; see
  :func:`lp_bound` for the formulation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_array

from imagefunnel.bench.oracle import ScenarioHindsight
from imagefunnel.bench.verdicts import ScorerCalibration
from imagefunnel.bench.workload import Workload
from imagefunnel.market.faults import (
    ConnectionResetFault,
    Fault,
    RateLimitFault,
    ServerErrorFault,
    UnreachableFault,
)
from imagefunnel.market.scenario import ProviderProfile, Scenario
from imagefunnel.providers.base import GenerationRequest

__all__ = ["BUCKET_S", "lp_bound", "price_floor"]

# Scenario seconds per capacity bucket. A request's price floor is exact whatever the bucket (the
# minimum over its own feasible interval); the bucket only sets how finely capacity is counted, and
# the windows of several buckets below take back most of what a short bucket gives away.
BUCKET_S = 10.0
# Capacity is also imposed on windows of this many consecutive buckets, aligned on multiples of
# their length and of half their length: what a provider completes in a window of W seconds
# (burst + rate × W, or per slot ⌈W / fastest run⌉ and (W + longest) / mean run) is tighter per
# second the longer W is.
_WINDOW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def price_floor(
    scenario: Scenario, workload: Workload, calibration: ScorerCalibration, *, step_s: float = 5.0
) -> float:
    """A floor on the expected cost per delivered image: each job buys every image at the lowest
    hindsight cost per accepted image (list price at that moment / true pass rate) any provider
    offers at any moment between the job's arrival and its deadline (sampled every ``step_s``), with
    no overshoot (not one candidate beyond what K needs) and no limit on how many a provider
    takes. The greedy ``oracle`` policy is a baseline, not this floor: it pays the end-of-job
    overshoot like any policy, and a lucky run can beat it."""
    hindsight = ScenarioHindsight(scenario, calibration, request=workload.request(0, 0))
    model = workload.model
    floors: list[float] = []
    for job in range(workload.jobs):
        start = job * workload.interarrival_s
        steps = max(1, int(workload.deadline_s / step_s))
        costs = [
            cost
            for i in range(steps + 1)
            for profile in scenario.providers
            if (cost := hindsight.cost_per_accepted(profile.name, model, start + i * step_s)) is not None
        ]
        if costs:
            floors.append(min(costs))
    return sum(floors) / len(floors) if floors else math.nan


@dataclass(frozen=True, slots=True)
class _Steps:
    """One provider's hindsight as a step function of the moment a request is submitted: from
    ``cuts[i]`` until ``cuts[i + 1]`` a request costs ``cost[i]`` per accepted image (inf: it cannot
    be bought then) and passes with probability ``passing[i]``."""

    cuts: tuple[float, ...]
    cost: tuple[float, ...]
    passing: tuple[float, ...]

    def over(self, lo: float, hi: float, *, closed: bool) -> tuple[float, float]:
        """The lowest cost per accepted image and the highest pass rate over ``[lo, hi)``, or
        ``[lo, hi]`` if ``closed``; ``(inf, 0)`` if that holds no moment."""
        first = max(0, bisect.bisect_right(self.cuts, lo) - 1)
        end = bisect.bisect_right(self.cuts, hi) if closed else bisect.bisect_left(self.cuts, hi)
        if hi < lo or (hi == lo and not closed) or end <= first:
            return math.inf, 0.0
        return min(self.cost[first:end]), max(self.passing[first:end])


def _changes(profile: ProviderProfile) -> list[float]:
    """Every moment the provider's price, availability or pass rate can change."""
    times = {0.0, *(point.after_s for point in profile.price_schedule)}
    for outage in profile.outages:
        times.update((outage.start_s, outage.end_s))
    for fault in profile.faults:
        if not isinstance(fault, UnreachableFault):
            times.update((fault.start_s, fault.end_s))
    return sorted(times)


def _refuses_everything(faults: Sequence[Fault]) -> bool:
    """A fault window that refuses every request submitted in it (a 429, 5xx or reset before the
    request was taken, on all of them) makes the provider unavailable, as an outage does."""
    for fault in faults:
        if isinstance(fault, ConnectionResetFault) and fault.at == "response":
            continue  # taken and billed: not a refusal
        if (
            isinstance(fault, RateLimitFault | ServerErrorFault | ConnectionResetFault)
            and fault.fraction >= 1.0
        ):
            return True
    return False


def _steps(profile: ProviderProfile, hindsight: ScenarioHindsight, request: GenerationRequest) -> _Steps:
    cuts = _changes(profile)
    cost: list[float] = []
    passing: list[float] = []
    for t in cuts:
        per_accepted = hindsight.cost_per_accepted(profile.name, request.model, t)
        if per_accepted is None or _refuses_everything(profile.faults_at(t)):
            cost.append(math.inf)
            passing.append(0.0)
            continue
        cost.append(per_accepted)
        passing.append(hindsight.pass_at(profile.name, t))
    return _Steps(tuple(cuts), tuple(cost), tuple(passing))


def _fastest_s(profile: ProviderProfile) -> float:
    """The shortest time from taking a request (or giving it a slot) to its result."""
    return profile.queue_s[0] + profile.processing_s[0]


def _window_capacity(profile: ProviderProfile, window_s: float) -> float | None:
    """The most requests ``profile`` can be expected to complete among those started in any
    ``window_s`` seconds, each limit the market enforces in a form no policy can beat; ``None``:
    no limit.

    * slots: see :func:`_slot_capacity`;
    * a rate limit: a token bucket of ``max(1, rate)`` tokens refilled at ``rate`` per second admits
      at most ``max(1, rate) + rate × window``; a steady 5xx or failure rate (drawn for each admitted
      request, independently of the past) leaves that share of them without an output.

    A provider with slots is counted by its slots alone (a rate limit counts submissions, which
    may come long before the slot): dropping a limit keeps the bound a floor."""
    if profile.slots is not None:
        return _slot_capacity(profile, window_s)
    rate = profile.rate_limit_per_s
    if rate is None:
        return None
    return (max(1.0, rate) + rate * window_s) * (1 - profile.error_5xx_rate) * (1 - profile.failure_rate)


def _slot_capacity(profile: ProviderProfile, window_s: float) -> float | None:
    """Requests a provider with ``slots`` can be expected to complete among those it starts (gives
    a slot) in a window: the lesser of two limits, per slot.

    * Each holds its slot at least the fastest run, so a slot starts at most ⌈window / fastest⌉.
    * In expectation, a slot's requests started in the window hold it for at most the window plus
      the longest run (the last one may run past the window's end), and each completed one holds
      it for a queue and a run drawn at submission, independently of everything the policy knows:
      at least the mean of queue + run per completion, even for a policy that cancels slow ones.
      (Queue + run is the sum of two uniform draws, whose hazard rate increases: a request
      cancelled after ``c`` seconds has used E[min(d, c)] ≥ mean × P(d ≤ c) of slot time.) Cold
      starts only lengthen a hold. So a slot completes at most (window + longest) / mean."""
    fastest = _fastest_s(profile)
    slots = profile.slots
    if slots is None or fastest <= 0:
        return None
    mean = (sum(profile.queue_s) + sum(profile.processing_s)) / 2
    longest = profile.queue_s[1] + profile.processing_s[1]
    return slots * min(math.ceil(window_s / fastest - 1e-9), (window_s + longest) / mean)


def _windows(bucket: int, buckets: int) -> Iterator[tuple[int, int]]:
    """The capacity windows ``(length, start)`` (in buckets) that hold bucket ``bucket``."""
    for length in _WINDOW_BUCKETS:
        if length > buckets:
            return
        yield length, bucket - bucket % length
        if length > 1:
            half = length // 2
            start = (bucket - half) - (bucket - half) % length + half
            if start + length <= buckets:
                yield length, start


@dataclass(slots=True)
class _Program:
    """The linear program as it is built: costs, and the constraint matrix in triplets."""

    cost: list[float]
    rows: list[int]
    cols: list[int]
    values: list[float]

    def variable(self, cost: float, job: int, capacity_rows: Sequence[tuple[int, float]]) -> None:
        """One variable: accepted images for ``job`` (demand row ``job``), at ``cost`` each, using
        capacity ``(row, requests per accepted image)``."""
        col = len(self.cost)
        self.cost.append(cost)
        for row, weight in ((job, -1.0), *capacity_rows):
            self.rows.append(row)
            self.cols.append(col)
            self.values.append(weight)


def lp_bound(
    scenario: Scenario, workload: Workload, calibration: ScorerCalibration, *, bucket_s: float = BUCKET_S
) -> float:
    """A floor on the expected cost per delivered image that counts capacity and timing: the optimum
    of a linear program that relaxes what any policy can do, over the total images delivered
    (``nan`` if even the relaxation cannot deliver them all).

    Variables: ``x[j, p, b] ≥ 0``, the expected accepted images job ``j`` gets from provider ``p``
    from requests started in bucket ``b`` (``bucket_s`` scenario seconds). "Started" is when the
    provider begins the request: its submission, or for a provider with slots the moment it gets a
    slot. A variable exists only where such a request can be bought: started no earlier than the
    job's arrival and early enough to finish by the job's deadline at the provider's fastest
    (shortest queue plus shortest run), submitted while the provider is up (no outage, no fault
    window refusing every request).

    Cost: ``x`` × the lowest hindsight cost per accepted image (list price / true pass rate, as
    ``ScenarioHindsight`` and the oracle compute them) at any submission moment the request could
    have: inside the bucket and the job's window, or for a provider with slots any moment from the
    job's arrival to the bucket's end (the price is fixed at submission, which may precede the
    slot). An expected bill is at least the accepted images times the lowest cost per accepted
    image among the moments they were bought at.

    Demand: for each job, ``Σ_p,b x[j, p, b] ≥ deliver``. Overshoot and the end-of-job waste every
    real policy pays are not charged.

    Capacity, per provider with a limit and per window of consecutive buckets (see
    ``_WINDOW_BUCKETS``): ``Σ_j x[j, p, b] / (highest pass rate in reach) ≤`` the requests the
    provider can complete among those started in the window (``_window_capacity``). Providers
    without a limit are pooled per job into one variable at their lowest cost, which changes
    nothing in the optimum.

    Every quantity is an expectation over the market's draws (defects, verdicts, 5xx, failures,
    queue and run times), each drawn when a request is submitted and independently of what the
    policy knows then: a job that always delivers its K images gets K accepted images in
    expectation, and each limit above holds in expectation. A job's deadline is part of the job:
    an image that ends after it is not one delivered in time. Nothing of any policy is assumed
    (not its requests in flight per job, its waves or its timeouts), and every market limit is
    taken in a form no policy can beat, so the expected cost of every policy that delivers every
    job's K images lies above the optimum (one that gives up on some may pay less per image)."""
    request = workload.request(0, 0)
    hindsight = ScenarioHindsight(scenario, calibration, request=request)
    limited = [p for p in scenario.providers if _window_capacity(p, bucket_s) is not None]
    steps = {p.name: _steps(p, hindsight, request) for p in scenario.providers}
    horizon = (workload.jobs - 1) * workload.interarrival_s + workload.deadline_s
    buckets = max(1, math.ceil(horizon / bucket_s))
    row_of, capacity = _capacity_rows(limited, buckets, bucket_s, first_row=workload.jobs)
    program = _Program([], [], [], [])
    for job in range(workload.jobs):
        arrival = job * workload.interarrival_s
        due = arrival + workload.deadline_s
        pooled = min(
            (
                steps[p.name].over(arrival, due - _fastest_s(p), closed=True)[0]
                for p in scenario.providers
                if p not in limited
            ),
            default=math.inf,
        )
        if math.isfinite(pooled):
            program.variable(pooled, job, ())
        for p in limited:
            for b, cost, passing in _reach(p, steps[p.name], arrival, due, bucket_s):
                rows = [
                    (row_of[(p.name, *w)], 1.0 / passing)
                    for w in _windows(b, buckets)
                    if (p.name, *w) in row_of
                ]
                program.variable(cost, job, rows)
    return _solve(program, capacity, workload)


def _capacity_rows(
    limited: Sequence[ProviderProfile], buckets: int, bucket_s: float, *, first_row: int
) -> tuple[dict[tuple[str, int, int], int], list[float]]:
    """The capacity constraints: the row of each ``(provider, window length, window start)`` and
    each row's limit."""
    row_of: dict[tuple[str, int, int], int] = {}
    capacity: list[float] = []
    for p in limited:
        for length in _WINDOW_BUCKETS:
            for start in range(0, buckets, max(1, length // 2)):
                if start + length <= buckets:
                    row_of[(p.name, length, start)] = first_row + len(capacity)
                    capacity.append(_window_capacity(p, length * bucket_s) or 0.0)
    return row_of, capacity


def _reach(
    p: ProviderProfile, steps: _Steps, arrival: float, due: float, bucket_s: float
) -> Iterator[tuple[int, float, float]]:
    """``(bucket, lowest cost per accepted image, highest pass rate)`` for each bucket in which a
    request of a job arriving at ``arrival`` and due at ``due`` can start at ``p`` and still be
    bought."""
    last = due - _fastest_s(p)
    for b in range(int(arrival // bucket_s), int(last // bucket_s) + 1):
        # Submitted in [lo, hi): in the bucket (or, with slots, from the arrival to the slot's
        # start in it) and in the job's window, whose last moment counts.
        lo = arrival if p.slots is not None else max(b * bucket_s, arrival)
        hi = min((b + 1) * bucket_s, last)
        cost, passing = steps.over(lo, hi, closed=hi == last)
        if math.isfinite(cost) and passing > 0:
            yield b, cost, passing


def _solve(program: _Program, capacity: Sequence[float], workload: Workload) -> float:
    if not program.cost:
        return math.nan
    shape = (workload.jobs + len(capacity), len(program.cost))
    matrix = coo_array((program.values, (program.rows, program.cols)), shape=shape).tocsr()
    limits = np.concatenate([np.full(workload.jobs, -float(workload.deliver)), np.asarray(capacity)])
    result = linprog(np.asarray(program.cost), A_ub=matrix, b_ub=limits, bounds=(0, None), method="highs")
    if result.status != 0:
        return math.nan
    return float(result.fun) / (workload.jobs * workload.deliver)
