"""Forecast a job before anything is bought: a seeded Monte Carlo of the funnel over the router's beliefs.

Each simulation is one possible world the router's beliefs allow: every provider's true pass rate is
drawn from its Beta posterior, then the job is played as the funnel plays it. Waves are sized by the
funnel's own rule (:func:`wave_sizes`, the twin of ``Funnel._next_wave_size``, tested to agree);
``concurrency`` requests are in flight at once and a request is not bought once K have passed; each
request goes where the default routing policy (``cost_per_accepted``, Thompson draws included) sends
it, and the simulated router learns from each verdict as the real one does; a purchase the budget
cannot hold is refused as the budget guard refuses it. A run stops as the funnel stops: K passed,
the budget refuses, the candidate cap or the deadline. Prices are the router's expected prices
(quote × learned drift); each request takes its provider's expected latency with some jitter.

Not modelled (yet): provider failures, rate limits and outages, a provider's own capacity (a box
that runs one prompt at a time), scoring time, duplicates. Everything is vectorised over simulations
with numpy, so a quote of a 60-image job takes well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from imagefunnel.funnel.engine import PRIOR_FAIL, PRIOR_PASS, WAVE_SAFETY
from imagefunnel.routing.passrates import PassRatePrior
from imagefunnel.routing.policies import _MIN_PASS, CostPerAcceptedPolicy, Option, Situation

__all__ = [
    "JobPlan",
    "JobQuote",
    "ProviderOutlook",
    "ProviderQuote",
    "chance",
    "forecast",
    "policy_scores",
    "refusal",
    "usd",
    "wave_sizes",
]

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

# The default policy's latency weight (``CostPerAcceptedPolicy(latency_weight=1.0)``, what jobs use).
LATENCY_WEIGHT = 1.0
# Relative spread of a request's latency around its provider's expected latency (a Gamma of this CV).
LATENCY_CV = 0.25
_MIN_ESTIMATE = 0.05  # the funnel never sizes a wave for a pass rate below this
_MAX_WAVES = 10_000  # every wave buys or refuses at least one request: a bound, never reached
_STOPS = ("delivered", "budget", "deadline", "candidate cap")
_DELIVERED, _BUDGET, _DEADLINE, _CAP = range(4)


def usd(value: float) -> str:
    """Money as the quote prints it: cents for dollars, four significant digits below a dollar."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4g}"


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What the job asks: K, its budget, deadline, candidate cap and concurrency."""

    deliver: int
    budget_usd: float
    deadline_s: float
    candidate_cap: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class ProviderOutlook:
    """One provider as the router sees it at quote time (from its routing ``Option``)."""

    provider: str
    model: str
    quoted_usd: float
    expected_usd: float  # what the router expects it to charge (quote × learned drift)
    alpha: float
    beta: float
    learned: bool  # the posterior holds verdicts (False: the prior)
    policy_latency_s: float  # the latency the policy weighs (its traits or measurements)
    latency_s: float  # the latency the forecast's clock uses per request
    error_rate: float
    cost_per_accepted_usd: float  # the policy's score with the posterior mean, at the job's start

    @classmethod
    def from_option(
        cls, option: Option, *, time_left_s: float, learned: bool, latency_s: float | None = None
    ) -> ProviderOutlook:
        """The outlook of a routing option; ``latency_s`` overrides the router's expected latency
        for the forecast's clock (e.g. what a market scenario or a providers file states)."""
        situation = Situation(now=0.0, time_left_s=time_left_s, use_case="")
        score = CostPerAcceptedPolicy(thompson=False, latency_weight=LATENCY_WEIGHT).score(option, situation)
        return cls(
            provider=option.provider,
            model=option.model,
            quoted_usd=option.quoted_usd,
            expected_usd=option.expected_usd,
            alpha=option.pass_rate.alpha,
            beta=option.pass_rate.beta,
            learned=learned,
            policy_latency_s=option.expected_latency_s,
            latency_s=option.expected_latency_s if latency_s is None else latency_s,
            error_rate=option.health.error_rate,
            cost_per_accepted_usd=score,
        )


class ProviderQuote(BaseModel):
    """One provider in a quote: its price, pass-rate belief, and the share of requests it would get."""

    model_config = ConfigDict(frozen=True)

    provider: str
    quoted_usd: float
    expected_usd: float
    pass_rate_mean: float
    pass_rate_alpha: float
    pass_rate_beta: float
    learned: bool
    cost_per_accepted_usd: float
    latency_s: float
    share: float  # of the requests bought over all simulations
    why: str


class JobQuote(BaseModel):
    """The forecast of a job: spend, candidates, time, P(deliver all K) and the budget a confidence needs."""

    model_config = ConfigDict(frozen=True)

    deliver: int
    budget_usd: float
    deadline_s: float
    candidate_cap: int
    simulations: int
    seed: int
    pass_rates: str  # where the pass rates come from, in words ("prior Beta(2,1), ...")
    cold_start: bool
    p_deliver: float
    expected_spend_usd: float
    spend_p50_usd: float
    spend_p95_usd: float
    expected_candidates: float
    candidates_p95: float
    expected_wall_s: float
    wall_p95_s: float
    stops: dict[str, float]  # why the simulated runs stopped: delivered, budget, deadline, candidate cap
    confidence: float
    needed_budget_usd: float | None  # the smallest budget reaching ``confidence`` (None: none does)
    p_deliver_at_needed: float | None
    p_deliver_unbounded: float  # with no budget limit: what the deadline and cap alone allow
    providers: list[ProviderQuote]


def wave_sizes(*, deliver: int, passed: Ints, generated: Ints, left: Ints) -> Ints:
    """The funnel's wave-size rule, over arrays: ask for the remaining need over the pass-rate estimate
    (the Beta(2, 1) posterior of this job's verdicts), with a margin, within the candidates left."""
    estimate = (PRIOR_PASS + passed) / (PRIOR_PASS + PRIOR_FAIL + generated)
    wanted = np.ceil((deliver - passed) / np.maximum(estimate, _MIN_ESTIMATE) * WAVE_SAFETY)
    return np.maximum(1, np.minimum(wanted.astype(np.int64), left))


def policy_scores(p: Floats, outlooks: Sequence[ProviderOutlook], time_left_s: Floats) -> Floats:
    """``CostPerAcceptedPolicy.score`` over arrays: ``p`` (sims × providers) are the pass-rate draws,
    ``time_left_s`` (sims) the time to the deadline; the least score is the provider chosen."""
    price = np.array([o.expected_usd for o in outlooks])
    expected_s = np.array([o.policy_latency_s / max(0.05, 1.0 - o.error_rate) for o in outlooks])
    cost = price / np.maximum(p, _MIN_PASS)
    timed = (time_left_s > 0) & np.isfinite(time_left_s)
    load = expected_s[None, :] / np.where(timed, time_left_s, 1.0)[:, None]
    penalty = 1.0 + LATENCY_WEIGHT * load * load
    penalty = np.where(load > 1.0, penalty * 4.0, penalty)
    return np.where(timed[:, None], cost * penalty, cost)


@dataclass(slots=True)
class _Runs:
    """The state of every simulated job (arrays over simulations)."""

    true_p: Floats  # sims × providers: this world's pass rates
    alpha: Floats  # sims × providers: the simulated router's posteriors
    beta: Floats
    passed: Ints
    generated: Ints
    requested: Ints
    refused: Ints
    spent: Floats
    clock: Floats
    refused_usd: Floats  # the last refused request's price (NaN: no refusal stands)
    stop: Ints  # -1 while running
    bought: Ints  # per provider, over all simulations

    @classmethod
    def start(cls, outlooks: Sequence[ProviderOutlook], sims: int, rng: np.random.Generator) -> _Runs:
        a = np.array([o.alpha for o in outlooks])
        b = np.array([o.beta for o in outlooks])
        zeros = np.zeros(sims, dtype=np.int64)
        return cls(
            true_p=rng.beta(a, b, size=(sims, len(outlooks))),
            alpha=np.tile(a, (sims, 1)),
            beta=np.tile(b, (sims, 1)),
            passed=zeros.copy(),
            generated=zeros.copy(),
            requested=zeros.copy(),
            refused=zeros.copy(),
            spent=np.zeros(sims),
            clock=np.zeros(sims),
            refused_usd=np.full(sims, np.nan),
            stop=np.full(sims, -1, dtype=np.int64),
            bought=np.zeros(len(outlooks), dtype=np.int64),
        )


def _stop(runs: _Runs, plan: JobPlan, budget: float) -> Bools:
    """Set the stop of runs the funnel would stop now, in its order; the runs still going."""
    going = runs.stop < 0
    checks = (
        (runs.passed >= plan.deliver, _DELIVERED),
        (runs.clock >= plan.deadline_s, _DEADLINE),
        (plan.candidate_cap - (runs.requested - runs.refused) <= 0, _CAP),
        (budget - runs.spent + 1e-12 < runs.refused_usd, _BUDGET),  # NaN compares False
    )
    for hit, reason in checks:
        now = going & hit
        runs.stop[now] = reason
        going &= ~hit
    runs.refused_usd[going] = np.nan  # a refusal that no longer stands (the funnel forgets it)
    return going


def _fits(spent: Floats, cost: Floats, go: Bools, budget: float) -> Bools:
    """Which of each run's requests (in order) the budget guard lets through: a refused request adds
    nothing, so a cheaper one after it may still fit."""
    fits = spent[:, None] + np.cumsum(np.where(go, cost, 0.0), axis=1) <= budget + 1e-12
    tight = np.flatnonzero((go & ~fits).any(axis=1))
    if tight.size:  # rare (the last dollars): replay those runs request by request
        committed = spent[tight].copy()
        for lane in range(cost.shape[1]):
            ok = go[tight, lane] & (committed + cost[tight, lane] <= budget + 1e-12)
            fits[tight, lane] = ok
            committed += np.where(ok, cost[tight, lane], 0.0)
    bought: Bools = fits & go
    return bought


def _play_wave(
    runs: _Runs,
    rows: Ints,
    sizes: Ints,
    plan: JobPlan,
    outlooks: Sequence[ProviderOutlook],
    budget: float,
    rng: np.random.Generator,
) -> None:
    """One wave of each run in ``rows``, ``concurrency`` requests at a time.

    Each round puts one request on each of the ``concurrency`` slots (a slot runs its requests one
    after another); the round's decisions see the verdicts of the rounds before it, as requests
    decided while others are in flight do, and no round starts once K have passed.
    """
    lanes, count = plan.concurrency, len(outlooks)
    price = np.array([o.expected_usd for o in outlooks])
    latency = np.array([o.latency_s for o in outlooks])
    shape = 1.0 / (LATENCY_CV * LATENCY_CV)
    slot_clock = np.tile(runs.clock[rows][:, None], (1, lanes))
    runs.requested[rows] += sizes
    for first in range(0, int(sizes.max()), lanes):
        index = np.flatnonzero((first < sizes) & (runs.passed[rows] < plan.deliver))
        free = slot_clock[index]
        go = (np.arange(lanes)[None, :] < (sizes[index] - first)[:, None]) & (free < plan.deadline_s)
        at = np.nonzero(go)  # this round's requests, each run's in slot order
        sim = rows[index]
        req = sim[at[0]]
        draws = rng.beta(runs.alpha[req], runs.beta[req])  # the router's Thompson draw, per request
        picked = np.argmin(policy_scores(draws, outlooks, plan.deadline_s - free[at]), axis=1)
        choice = np.zeros(go.shape, dtype=np.int64)
        choice[at] = picked
        cost = price[choice]
        buy = _fits(runs.spent[sim], cost, go, budget)
        refused = go & ~buy
        runs.refused[sim] += refused.sum(axis=1)
        last = np.flatnonzero(refused.any(axis=1))
        runs.refused_usd[sim[last]] = cost[last, lanes - 1 - np.argmax(refused[last, ::-1], axis=1)]
        # A request cut off by the deadline counts at its price: a provider may bill it all the same.
        runs.spent[sim] += np.where(buy, cost, 0.0).sum(axis=1)
        runs.bought += np.bincount(choice[buy], minlength=count)
        finish = free + latency[choice] * rng.gamma(shape, 1.0 / shape, size=free.shape)
        ok = buy & (finish <= plan.deadline_s)
        good = ok & (rng.random(free.shape) < runs.true_p[sim[:, None], choice])
        slot_clock[index] = np.where(buy, np.minimum(finish, plan.deadline_s), free)
        # The round's verdicts: candidates, passes, and what the router learns from them.
        runs.passed[sim] += good.sum(axis=1)
        runs.generated[sim] += ok.sum(axis=1)
        for provider in range(count):
            mine = choice == provider
            runs.alpha[sim, provider] += (mine & good).sum(axis=1)
            runs.beta[sim, provider] += (mine & ok & ~good).sum(axis=1)
    runs.clock[rows] = np.maximum(runs.clock[rows], slot_clock.max(axis=1))


def _simulate(
    plan: JobPlan, outlooks: Sequence[ProviderOutlook], *, budget: float, sims: int, seed: int
) -> _Runs:
    rng = np.random.default_rng(seed)
    runs = _Runs.start(outlooks, sims, rng)
    for _ in range(_MAX_WAVES):
        going = _stop(runs, plan, budget)
        if not going.any():
            return runs
        rows = np.flatnonzero(going)
        left = plan.candidate_cap - (runs.requested[rows] - runs.refused[rows])
        sizes = wave_sizes(
            deliver=plan.deliver, passed=runs.passed[rows], generated=runs.generated[rows], left=left
        )
        _play_wave(runs, rows, sizes, plan, outlooks, budget, rng)
    raise RuntimeError("the simulated funnel did not stop")  # a bug: every wave moves a run forward


def _needed_budget(
    plan: JobPlan, outlooks: Sequence[ProviderOutlook], unbounded: _Runs, confidence: float, *, seed: int
) -> tuple[float | None, float | None]:
    """The least budget reaching ``confidence``, and the P(deliver) it reaches (None: none reaches it).

    A run that delivered without a budget limit delivers within any budget above what it spent (up
    to its first refusal it is the same run), so the ``confidence`` quantile of those spends (others
    infinite) is the answer, checked by simulating at it; sampling noise may ask for a little more.
    """
    spend = np.where(unbounded.stop == _DELIVERED, unbounded.spent, np.inf)
    needed = float(np.quantile(spend, confidence, method="higher"))
    if not math.isfinite(needed):
        return None, None
    reached = 0.0
    for attempt in range(5):
        if attempt:
            needed *= 1.05
        needed = _round_up(needed)
        runs = _simulate(plan, outlooks, budget=needed, sims=len(spend), seed=seed)
        reached = float(np.mean(runs.stop == _DELIVERED))
        if reached >= confidence:
            break
    return needed, reached


def _round_up(value: float) -> float:
    """Up to the precision :func:`usd` prints, so the budget printed is the budget that was checked."""
    step = 0.01 if value >= 1 else 1e-4
    return math.ceil(value / step - 1e-9) * step


def _pass_rates_note(outlooks: Sequence[ProviderOutlook], prior: PassRatePrior) -> str:
    learned = [o.provider for o in outlooks if o.learned]
    belief = f"prior Beta({prior.alpha:g},{prior.beta:g})"
    if not learned:
        return f"pass rates: {belief}, no jobs learned yet"
    if len(learned) == len(outlooks):
        return "pass rates: learned from earlier jobs for every provider"
    return f"pass rates: learned for {', '.join(learned)}; {belief} for the others"


def _provider_quotes(outlooks: Sequence[ProviderOutlook], bought: Ints) -> list[ProviderQuote]:
    total = max(1, int(bought.sum()))
    ordered = sorted(
        zip(outlooks, bought, strict=True), key=lambda x: (x[0].cost_per_accepted_usd, x[0].provider)
    )
    quotes = []
    for rank, (o, count) in enumerate(ordered, start=1):
        mean = o.alpha / (o.alpha + o.beta)
        belief = "learned" if o.learned else "prior"
        why = (
            f"#{rank}: {usd(o.expected_usd)} a call / P(pass) {mean:.2f} ({belief}) = "
            f"{usd(o.cost_per_accepted_usd)} per accepted image"
        )
        quotes.append(
            ProviderQuote(
                provider=o.provider,
                quoted_usd=o.quoted_usd,
                expected_usd=o.expected_usd,
                pass_rate_mean=mean,
                pass_rate_alpha=o.alpha,
                pass_rate_beta=o.beta,
                learned=o.learned,
                cost_per_accepted_usd=o.cost_per_accepted_usd,
                latency_s=o.latency_s,
                share=int(count) / total,
                why=why,
            )
        )
    return quotes


def forecast(
    plan: JobPlan,
    outlooks: Sequence[ProviderOutlook],
    *,
    confidence: float = 0.95,
    simulations: int = 2000,
    seed: int = 0,
    prior: PassRatePrior | None = None,
) -> JobQuote:
    """Quote ``plan`` over ``outlooks`` (the providers the router would consider); see the module."""
    if not outlooks:
        raise ValueError("a forecast needs at least one provider")
    if not 0 < confidence < 1 or simulations < 1:
        raise ValueError("confidence must be in (0, 1) and simulations ≥ 1")
    ordered = sorted(outlooks, key=lambda o: o.provider)  # the policy breaks ties by name
    unbounded = _simulate(plan, ordered, budget=math.inf, sims=simulations, seed=seed)
    # A budget no run reached refuses nothing: its runs are the unbounded ones, step for step.
    within = float(unbounded.spent.max()) <= plan.budget_usd
    runs = (
        unbounded if within else _simulate(plan, ordered, budget=plan.budget_usd, sims=simulations, seed=seed)
    )
    needed, reached = _needed_budget(plan, ordered, unbounded, confidence, seed=seed)
    return JobQuote(
        deliver=plan.deliver,
        budget_usd=plan.budget_usd,
        deadline_s=plan.deadline_s,
        candidate_cap=plan.candidate_cap,
        simulations=simulations,
        seed=seed,
        pass_rates=_pass_rates_note(ordered, prior or PassRatePrior()),
        cold_start=not any(o.learned for o in ordered),
        p_deliver=float(np.mean(runs.stop == _DELIVERED)),
        expected_spend_usd=float(runs.spent.mean()),
        spend_p50_usd=float(np.quantile(runs.spent, 0.5)),
        spend_p95_usd=float(np.quantile(runs.spent, 0.95)),
        expected_candidates=float(runs.generated.mean()),
        candidates_p95=float(np.quantile(runs.generated, 0.95)),
        expected_wall_s=float(runs.clock.mean()),
        wall_p95_s=float(np.quantile(runs.clock, 0.95)),
        stops={name: float(np.mean(runs.stop == code)) for code, name in enumerate(_STOPS)},
        confidence=confidence,
        needed_budget_usd=needed,
        p_deliver_at_needed=reached,
        p_deliver_unbounded=float(np.mean(unbounded.stop == _DELIVERED)),
        providers=_provider_quotes(ordered, runs.bought),
    )


def chance(p: float) -> str:
    """A probability to three places, rounded down: a printed chance never overstates the forecast."""
    return f"{math.floor(p * 1000 + 1e-9) / 1000:.3f}"


def refusal(quote: JobQuote) -> str | None:
    """Why a job with this quote must not start at its confidence, in one line (None: it may start)."""
    if quote.p_deliver >= quote.confidence:
        return None
    head = (
        f"budget {usd(quote.budget_usd)} reaches P(deliver {quote.deliver})={chance(quote.p_deliver)} "
        f"< {quote.confidence:g}"
    )
    if quote.needed_budget_usd is not None:
        return f"{head}; a budget of {usd(quote.needed_budget_usd)} reaches it"
    limits = f"the deadline of {quote.deadline_s:g}s and the candidate cap of {quote.candidate_cap}"
    return f"{head}; no budget reaches it: {limits} allow P={chance(quote.p_deliver_unbounded)}"
