"""Is the quote calibrated? Quote seeded jobs with the forecast, then run them in the simulated market.

For one scenario and one start (``warm``: the pass rates and the charge/quote drift learned by the
earlier jobs of the run carry over, as the store carries them (its ledger holds the bills); ``cold``:
every job starts from the prior and no drift), jobs of varied K,
budget, deadline and concurrency run one after another on one market in virtual time. Before each
job, the forecast is asked what a ``quote`` would ask it, from what the router can know then: a
fresh router's options for the job's first request (adapter-visible quotes at the learned drift,
health, the pass-rate posteriors of the book), the scenario's stated latencies and each adapter's
price risk (``forecast.price_risk``). Then the job is played by a twin of
the funnel's wave loop (its wave rule, its budget refusals, its stops) over the real Router and
:class:`~imagefunnel.bench.sim.SimProvider`\\ s, with the scorer's verdicts from
:class:`~imagefunnel.bench.verdicts.VerdictModel`; nothing of the forecast runs the job. The job's
spend is what the market billed for its requests.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from imagefunnel.bench.simrun import _Aliased, served_by
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.bench.verdicts import ScorerCalibration, VerdictModel
from imagefunnel.errors import BudgetExceeded, NoProviderAvailable
from imagefunnel.forecast import JobPlan, JobQuote, ProviderOutlook, forecast, price_rises_only, price_risk
from imagefunnel.funnel.waves import wave_size
from imagefunnel.market.engine import Market
from imagefunnel.market.scenario import Scenario
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.routing import (
    BudgetGuard,
    HealthProber,
    NullLedger,
    PassRateBook,
    PriceBook,
    RouteContext,
    Router,
)

__all__ = [
    "STARTS",
    "CalibrationJob",
    "CalibrationRun",
    "JobDraw",
    "ReliabilityBin",
    "draw_jobs",
    "run_calibration",
]

STARTS = ("warm", "cold")
MODEL = "flux-dev"
USE_CASE = "headshot"
PROMPT = "studio headshot of a person, neutral background, soft light"
# The funnel's default: active probes every 15 s while a job runs (``jobs.DEFAULT_PROBE_INTERVAL_S``).
PROBE_INTERVAL_S = 15.0
_INTERARRIVAL_S = 36.0  # a job starts this long after the one before it started, or when it ended
_DRAIN_S = 3600.0  # enough for anything still running to finish and be billed
# Bins of quoted P(deliver): the ends are where most quotes fall, so they get their own bins.
BIN_EDGES = (0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0)
TOLERANCE = 0.03  # the issue's ±3 points


@dataclass(frozen=True, slots=True)
class JobDraw:
    """One job's asks, drawn from the run's seed. The budget is placed at quote time: ``budget_z``
    standard deviations from the median spend of the job's quote without a budget limit (the spread
    read off its p50 and p95), so that the quotes land all over 0–1 instead of at 0 or 1; ``None``:
    an ample budget (three times that quote's p95), a job only its deadline and cap can stop."""

    deliver: int
    deadline_s: float
    concurrency: int
    budget_z: float | None
    confidence: float | None = None  # the spec's ``confidence``: waves sized by the confident rule

    def budget_usd(self, unbounded: JobQuote) -> float:
        p50, p95 = unbounded.spend_p50_usd, unbounded.spend_p95_usd
        if self.budget_z is None:
            return round(3.0 * p95 + 0.01, 4)
        spread = max((p95 - p50) / 1.645, 0.02 * p50)
        return round(max(1e-4, p50 + self.budget_z * spread), 4)


@dataclass(frozen=True, slots=True)
class CalibrationJob:
    draw: JobDraw
    budget_usd: float
    started_s: float
    quoted_p: float
    quoted_spend_usd: float
    quoted_p95_usd: float
    delivered: bool
    spend_usd: float
    stop: str
    billed: tuple[tuple[str, int], ...] = ()  # billed requests per provider
    quoted_shares: tuple[tuple[str, float], ...] = ()  # the quote's share of requests per provider


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_quoted: float
    observed: float

    @property
    def difference(self) -> float:
        return self.observed - self.mean_quoted

    @property
    def standard_error(self) -> float:
        """The binomial standard error of the observed rate if the quotes were right."""
        p = self.mean_quoted
        return math.sqrt(max(p * (1.0 - p), 0.0) / self.count) if self.count else math.nan

    @property
    def verdict(self) -> str:
        """``pass`` within ±3 points; ``noise`` outside them but within 2 standard errors beyond
        them (too few jobs to tell); ``fail`` otherwise."""
        off = abs(self.difference)
        if off <= TOLERANCE + 1e-12:
            return "pass"
        return "noise" if off <= TOLERANCE + 2.0 * self.standard_error else "fail"


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    scenario: str
    start: str
    jobs: tuple[CalibrationJob, ...]
    unquotable: int = 0  # jobs no provider could take at quote time (the quote refuses them)

    def bins(self) -> list[ReliabilityBin]:
        quoted = np.array([j.quoted_p for j in self.jobs])
        delivered = np.array([j.delivered for j in self.jobs], dtype=float)
        out = []
        for low, high in itertools.pairwise(BIN_EDGES):
            last = high >= BIN_EDGES[-1]
            mine = (quoted >= low) & ((quoted <= high) if last else (quoted < high))
            if mine.any():
                out.append(
                    ReliabilityBin(
                        low,
                        high,
                        int(mine.sum()),
                        float(quoted[mine].mean()),
                        float(delivered[mine].mean()),
                    )
                )
        return out

    @property
    def within_p95(self) -> float:
        """The share of jobs whose spend was at most the quoted p95."""
        if not self.jobs:
            return math.nan
        return sum(j.spend_usd <= j.quoted_p95_usd + 1e-9 for j in self.jobs) / len(self.jobs)

    @property
    def over_budget(self) -> int:
        """Jobs the market billed more than their budget (the budget is a hard limit: 0 expected)."""
        return sum(j.spend_usd > j.budget_usd + 1e-9 for j in self.jobs)

    @property
    def mean_quoted(self) -> float:
        return float(np.mean([j.quoted_p for j in self.jobs])) if self.jobs else math.nan

    @property
    def delivered_rate(self) -> float:
        return float(np.mean([j.delivered for j in self.jobs])) if self.jobs else math.nan

    @property
    def brier(self) -> float:
        if not self.jobs:
            return math.nan
        return float(np.mean([(j.quoted_p - float(j.delivered)) ** 2 for j in self.jobs]))


def draw_jobs(*, jobs: int, seed: int) -> list[JobDraw]:
    """K of 1–40, concurrency 2, 4 or 8, deadlines from tight to ample (0.6–4× 6 s per request
    round a job needs), budgets from 2.5 spreads under the median spend to 2.5 over it, one job in
    ten with an ample budget; one job in three asks for a ``confidence`` of 0.9 or 0.99 (drawn
    from a stream of its own, so the other asks are those of a run without confidences)."""
    rng = np.random.default_rng([seed, 16])
    confident = np.random.default_rng([seed, 17])
    out = []
    for _ in range(jobs):
        deliver = int(rng.integers(1, 41))
        concurrency = int(rng.choice([2, 4, 8]))
        rounds = deliver * 1.5 / concurrency + 1.0  # about how many request rounds a job takes
        deadline = max(5.0, rounds * 6.0 * float(np.exp(rng.uniform(math.log(0.6), math.log(4.0)))))
        z = float(rng.uniform(-2.5, 2.5))
        ample = bool(rng.random() < 0.1)
        confidence = float(confident.choice([0.9, 0.99])) if confident.random() < 1 / 3 else None
        budget_z = None if ample else round(z, 3)
        out.append(JobDraw(deliver, round(deadline, 1), concurrency, budget_z, confidence))
    return out


def scenario_latencies(scenario: Scenario) -> dict[str, float]:
    """Each provider's mean latency as its scenario states it (queue plus processing), what the
    quote uses for an emulated market."""
    return {p.name: sum(p.queue_s) / 2 + sum(p.processing_s) / 2 for p in scenario.providers}


def _request(job: int, n: int, *, seed: int) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"calib{job:04d}-{n:05d}",
        model=MODEL,
        prompt=PROMPT,
        width=1024,
        height=1024,
        seed=(seed * 1_000_003 + job) * 1_000_003 + n,
    )


@dataclass(slots=True)
class _State:
    """A twin of the funnel's ``_JobState``: what its wave loop reads."""

    draw: JobDraw
    deadline: float
    budget: BudgetGuard
    passed: int = 0
    generated: int = 0
    requested: int = 0
    refused: int = 0
    failed_error: str | None = None
    stop: str = ""
    round_s: float | None = None  # the slowest wave's time per round of ``concurrency`` requests

    @property
    def done(self) -> bool:
        return self.passed >= self.draw.deliver or bool(self.stop)

    def next_wave(self, now: float) -> int:
        """``Funnel._next_wave_size``: the same stops, in the same order, and the same rule
        (``waves.wave_size``)."""
        if now >= self.deadline:
            self.stop = "deadline"
            return 0
        left = 4 * self.draw.deliver - (self.requested - self.refused)
        if left <= 0:
            self.stop = "candidate cap"
            return 0
        if self.budget.refusal_stands():
            self.stop = "budget"
            return 0
        return wave_size(
            needed=self.draw.deliver - self.passed,
            passed=self.passed,
            generated=self.generated,
            left=left,
            confidence=self.draw.confidence,
            time_left_s=self.deadline - now,
            round_s=self.round_s,
        )


Judge = Callable[[str, str], bool]


async def _play(router: Router, state: _State, index: int, judge: Judge, *, seed: int) -> None:
    """The funnel's wave loop over ``router`` (scoring takes no time here)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(state.draw.concurrency)

    async def one(n: int, wave: int) -> None:
        async with gate:
            if state.done or loop.time() >= state.deadline:
                return
            ctx = RouteContext(
                job_id=f"calib{index:04d}",
                wave=wave,
                deadline=state.deadline,
                budget=state.budget,
                use_case=USE_CASE,
            )
            try:
                generation = await router.generate(_request(index, n, seed=seed), ctx)
            except BudgetExceeded:
                state.refused += 1
                return
            except NoProviderAvailable as exc:
                state.failed_error = str(exc)
                return
            passed = judge(generation.provider, generation.provider_request_id)
            router.observe_verdict(generation.provider, generation.model, USE_CASE, passed)
            state.generated += 1
            state.passed += passed

    wave = 0
    while not state.done:
        size = state.next_wave(loop.time())
        if size == 0:
            break
        wave += 1
        first, before = state.requested, state.generated
        state.requested += size
        started = loop.time()
        await asyncio.gather(*(one(first + i, wave) for i in range(size)))
        if state.draw.confidence is not None:  # timed as the funnel times it
            took = (loop.time() - started) / math.ceil(size / state.draw.concurrency)
            state.round_s = took if state.round_s is None else max(state.round_s, took)
        if state.generated == before and state.failed_error and not state.done:
            # The funnel's "no provider could deliver a whole wave"; when the wave ran into the
            # deadline, that is what stopped it.
            state.stop = "deadline" if loop.time() >= state.deadline else "no provider"
    if not state.stop:
        state.stop = "delivered" if state.passed >= state.draw.deliver else "stopped"


async def _quote(
    providers: Sequence[_Aliased],
    book: PassRateBook,
    prices: PriceBook,
    draw: JobDraw,
    index: int,
    *,
    latencies: Mapping[str, float],
    simulations: int,
    seed: int,
) -> JobQuote | None:
    """What ``imagefunnel quote`` asks the forecast, from a router of its own over ``book`` and
    ``prices`` (what the start has learned), at the budget the draw places (None: no provider can
    take the job now)."""
    loop = asyncio.get_running_loop()
    router = Router(providers, ledger=NullLedger(), clock=loop.time, pass_rates=book, prices=prices)
    request = _request(index, 0, seed=seed)
    ctx = RouteContext(job_id="quote", wave=1, deadline=loop.time() + draw.deadline_s, use_case=USE_CASE)
    options = (await router.options(request, ctx)).ranked
    if not options:
        return None
    learned = {rate.key for rate in book.all()}
    by_name = {p.name: p for p in providers}
    outlooks = [
        ProviderOutlook.from_option(
            o,
            time_left_s=draw.deadline_s,
            learned=o.pass_rate.key in learned,
            latency_s=latencies.get(o.provider),
            slots=router.slots(o.provider),
            price_sigma=price_risk(by_name.get(o.provider)),
            price_rises_only=price_rises_only(prices, o.provider, o.model),
        )
        for o in options
    ]

    def plan(budget_usd: float) -> JobPlan:
        return JobPlan(
            deliver=draw.deliver,
            budget_usd=budget_usd,
            deadline_s=draw.deadline_s,
            candidate_cap=4 * draw.deliver,
            concurrency=draw.concurrency,
            confidence=draw.confidence,
        )

    job_seed = seed * 100_003 + index
    unbounded = forecast(plan(math.inf), outlooks, simulations=simulations, seed=job_seed, prior=book.prior)
    budget = draw.budget_usd(unbounded)
    return forecast(plan(budget), outlooks, simulations=simulations, seed=job_seed, prior=book.prior)


@dataclass(slots=True)
class _Pending:
    draw: JobDraw
    started_s: float
    quote: JobQuote
    requests: set[str] = field(default_factory=set)  # the market's ids of the job's requests
    delivered: bool = False
    stop: str = ""


async def _run(
    scenario: Scenario,
    draws: Sequence[JobDraw],
    *,
    start: str,
    calibration: ScorerCalibration,
    simulations: int,
    seed: int,
) -> CalibrationRun:
    loop = asyncio.get_running_loop()
    market = Market(scenario, clock=loop.time)
    providers = [_Aliased(market, name, model=MODEL) for name in served_by(scenario)]
    by_name = {p.name: p for p in providers}
    verdicts = VerdictModel(calibration, seed=seed)
    latencies = scenario_latencies(scenario)
    warm_book = PassRateBook(clock=loop.time)
    # What a long-lived router carries from job to job besides pass rates: the charge/quote drift
    # it learned (warm); a cold start knows none.
    warm_prices = PriceBook(clock=loop.time)

    def judge(provider: str, request_id: str) -> bool:
        return verdicts.passed(by_name[provider].jobs[request_id].truth)

    pending: list[_Pending] = []
    unquotable = 0
    for index, draw in enumerate(draws):
        await asyncio.sleep(max(0.0, index * _INTERARRIVAL_S - loop.time()))
        book = warm_book if start == "warm" else PassRateBook(clock=loop.time)
        prices = warm_prices if start == "warm" else PriceBook(clock=loop.time)
        quote = await _quote(
            providers, book, prices, draw, index, latencies=latencies, simulations=simulations, seed=seed
        )
        if quote is None:
            unquotable += 1
            continue
        known = {name: set(p.jobs) for name, p in by_name.items()}
        job = _Pending(draw, market.now_s(), quote)
        router = Router(
            providers,
            ledger=NullLedger(),
            clock=loop.time,
            pass_rates=book,
            prices=prices,
            seed=seed * 100_003 + index,
        )
        state = _State(draw, loop.time() + draw.deadline_s, BudgetGuard(quote.budget_usd))
        prober = HealthProber(providers, router.health, interval_s=PROBE_INTERVAL_S)
        prober.start()
        try:
            await _play(router, state, index, judge, seed=seed)
        finally:
            await prober.aclose()
        job.delivered, job.stop = state.passed >= draw.deliver, state.stop
        job.requests = {i for name, p in by_name.items() for i in p.jobs if i not in known[name]}
        pending.append(job)
    market.advance(_DRAIN_S)
    billed: dict[str, float] = {}
    billed_by: dict[str, str] = {}
    for record in market.billing():
        billed[record.request_id] = billed.get(record.request_id, 0.0) + record.usd
        billed_by[record.request_id] = record.provider
    jobs = tuple(
        CalibrationJob(
            draw=j.draw,
            budget_usd=j.quote.budget_usd,
            started_s=j.started_s,
            quoted_p=j.quote.p_deliver,
            quoted_spend_usd=j.quote.expected_spend_usd,
            quoted_p95_usd=j.quote.spend_p95_usd,
            delivered=j.delivered,
            spend_usd=math.fsum(billed.get(i, 0.0) for i in j.requests),
            stop=j.stop,
            billed=_counts(billed_by[i] for i in j.requests if i in billed_by),
            quoted_shares=tuple((p.provider, round(p.share, 3)) for p in j.quote.providers),
        )
        for j in pending
    )
    return CalibrationRun(scenario.name, start, jobs, unquotable)


def _counts(names: Iterable[str]) -> tuple[tuple[str, int], ...]:
    found: dict[str, int] = {}
    for name in names:
        found[name] = found.get(name, 0) + 1
    return tuple(sorted(found.items()))


def run_calibration(
    scenario: Scenario,
    *,
    jobs: int,
    start: str,
    calibration: ScorerCalibration,
    simulations: int = 2000,
    seed: int = 0,
) -> CalibrationRun:
    """Quote and run ``jobs`` seeded jobs on ``scenario`` in virtual time; see the module."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, not {start!r}")
    draws = draw_jobs(jobs=jobs, seed=seed)
    return run_virtual(
        _run(scenario, draws, start=start, calibration=calibration, simulations=simulations, seed=seed)
    )
