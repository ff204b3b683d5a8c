"""Forecast a job before anything is bought: a seeded Monte Carlo of the funnel over the router's beliefs.

Each simulation is one possible world the router's beliefs allow: every provider's true pass rate is
drawn from its Beta posterior, then the job is played as the funnel plays it. Waves are sized by the
funnel's own rule (:func:`wave_sizes`, the twin of ``Funnel._next_wave_size``, tested to agree);
``concurrency`` requests are in flight at once, each sent when a slot frees, and a request is not
bought once K have passed by then (those already in flight are bought and billed all the same); each
request goes where the default routing policy (``cost_per_accepted``, Thompson draws included) sends
it, and the simulated router learns from each verdict as the real one does; a purchase the budget
cannot hold is refused as the budget guard refuses it, holding what the dispatcher holds while
a request is in flight (the worst case of a GPU-second price: a tight budget runs fewer of those at
once). A request the provider fails (``failure_rate``, at least :data:`DEFAULT_FAILURE_RATE`) goes to
the runner-up, as the router retries it. A run stops as the funnel stops: K passed, the budget
refuses, the candidate cap or the deadline. Prices are the router's expected prices (quote ×
learned drift; a GPU-second request bills the seconds it ran); each request takes its provider's
expected latency with some jitter.

Each image is scored in its request's slot (``JobPlan.score_s`` per candidate, the store's measured
time from answer to verdict where it has one): the slot, and so the wave, waits for the verdict.
A provider whose adapter quotes a configured list price (Replicate, Together, OpenAI: only fal's
adapter reads the live price) may bill more or less than it quotes; the learned drift says how far
it did lately, not how far it will while the job runs. So each such provider carries a price risk
(``ProviderOutlook.price_sigma``, :data:`LIST_PRICE_SIGMA` unless the caller knows better): each
simulated world draws one log-normal bill factor per provider for the whole job, one-sided (bills
only above the expectation) while the provider has not billed lately and its price is nothing but
its list price (:func:`price_rises_only`), which moves the bill and what the budget sees spent,
never the router's choice (the router sees only the quote).
Not modelled (yet): outages and rate limits beyond that failure rate, a price change larger than
that spread (a list price tripling mid-job shows only on the bill), scoring slowing down when many
candidates arrive together beyond what that measurement saw, duplicates. A provider
with a slot limit (``ProviderOutlook.slots``: a ComfyUI server runs one prompt at a time) queues
what it cannot run at once, across waves. Everything is vectorised over simulations
with numpy. ``imagefunnel bench quote`` measures how well the quotes hold on the emulated market.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from imagefunnel.funnel.waves import (
    MIN_ESTIMATE,
    PRIOR_FAIL,
    PRIOR_PASS,
    WAVE_SAFETY,
    wave_size,
)
from imagefunnel.providers.base import PriceUnit
from imagefunnel.routing.dispatch import BILLED_TAIL, STOP_GRACE, TimeoutSettings
from imagefunnel.routing.passrates import PassRatePrior
from imagefunnel.routing.policies import _MIN_PASS, CostPerAcceptedPolicy, Option, Situation
from imagefunnel.routing.pricebook import PriceBook

__all__ = [
    "DEFAULT_FAILURE_RATE",
    "LIST_PRICE_SIGMA",
    "JobPlan",
    "JobQuote",
    "ProviderOutlook",
    "ProviderQuote",
    "chance",
    "forecast",
    "holds",
    "policy_scores",
    "price_rises_only",
    "price_risk",
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
# The share of requests a provider is assumed to fail (5xx, a failed run) when the router has not
# measured more: hosted image APIs fail a few requests in a hundred, and each failure sends its
# request to the next-ranked provider, which usually costs more. A router that starts a job has
# measured nothing yet (its health is per process), so without this the forecast promised spend
# as if no request ever failed over.
DEFAULT_FAILURE_RATE = 0.02
# The log-spread of what a list-priced provider bills against its quote over a job: the standard
# deviation of the log change of a spot GPU price from one five-minute step to the next, measured on
# the seed-market scenario's spot providers (0.217 for spot-a, billed per GPU-second; 0.223 for
# spot-b, per megapixel): what a learned price level can be off by by the time a job has run. Not
# fitted to any quote benchmark. A provider whose adapter reads its live price carries none.
LIST_PRICE_SIGMA = 0.22
_TIMEOUT_S = TimeoutSettings().max_s  # a fresh router's attempt timeout (no latency measured yet)
_MAX_WAVES = 10_000  # every wave buys or refuses at least one request: a bound, never reached
_STOPS = ("delivered", "budget", "deadline", "candidate cap")
_DELIVERED, _BUDGET, _DEADLINE, _CAP = range(4)


def usd(value: float) -> str:
    """Money as the quote prints it: cents for dollars, four significant digits below a dollar."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4g}"


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What the job asks: K, its budget, deadline, candidate cap and concurrency, and how its waves
    are sized (the spec's ``confidence``; None: the margin rule)."""

    deliver: int
    budget_usd: float
    deadline_s: float
    candidate_cap: int
    concurrency: int
    confidence: float | None = None
    # Seconds from an image's arrival to its verdict: the funnel scores inside the request's slot,
    # so the slot (and the wave) waits for it; the provider is free again as the image arrives.
    score_s: float = 0.0


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
    failure_rate: float = DEFAULT_FAILURE_RATE  # a request fails and goes to the next-ranked provider
    gpu_second_usd: float = 0.0  # the quote's price per GPU-second (0: not time-billed)
    # Requests it runs at once; the rest wait in its queue (a ComfyUI server runs one prompt at a
    # time). None: as many as are sent (a hosted API).
    slots: int | None = None
    # Log-spread of what it bills against ``expected_usd`` over a job (0: it bills what it quotes,
    # e.g. an adapter that reads the live price); see :func:`price_risk`. ``price_rises_only``: the
    # spread is one-sided, bills above the expectation only (:func:`price_rises_only`).
    price_sigma: float = 0.0
    price_rises_only: bool = False

    @classmethod
    def from_option(
        cls,
        option: Option,
        *,
        time_left_s: float,
        learned: bool,
        latency_s: float | None = None,
        slots: int | None = None,
        price_sigma: float = 0.0,
        price_rises_only: bool = False,
    ) -> ProviderOutlook:
        """The outlook of a routing option; ``latency_s`` overrides the router's expected latency
        for the forecast's clock (e.g. what a market scenario or a providers file states);
        ``price_sigma`` is its price risk (:func:`price_risk` of its provider)."""
        situation = Situation(now=0.0, time_left_s=time_left_s, use_case="")
        quote = option.priced.quote
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
            failure_rate=max(DEFAULT_FAILURE_RATE, option.health.error_rate),
            gpu_second_usd=quote.unit_price_usd if quote.unit is PriceUnit.PER_GPU_SECOND else 0.0,
            slots=slots,
            price_sigma=price_sigma,
            price_rises_only=price_rises_only,
        )


def price_risk(provider: object) -> float:
    """The price risk a forecast gives ``provider``: :data:`LIST_PRICE_SIGMA` when its adapter
    quotes a configured list price (it says so with ``quotes_list_price``), else 0."""
    return LIST_PRICE_SIGMA if getattr(provider, "quotes_list_price", False) else 0.0


def price_rises_only(prices: PriceBook, provider: str, model: str) -> bool:
    """Whether a forecast should let ``provider``'s bills only rise above its expected price: while
    it has not billed lately (``PriceBook.has_billed``), that price is its list price and nothing
    else, and a list price nobody has checked against a bill surprises a promise upwards (a bill
    below it is a discount its operator would have configured). Once it has billed, the learned
    drift is the price level and the risk is that level moving, either way."""
    return not prices.has_billed(provider, model)


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
    score_s: float = 0.0  # the seconds per candidate the wall time counts for scoring (JobPlan.score_s)
    stops: dict[str, float]  # why the simulated runs stopped: delivered, budget, deadline, candidate cap
    confidence: float
    needed_budget_usd: float | None  # the smallest budget reaching ``confidence`` (None: none does)
    p_deliver_at_needed: float | None
    p_deliver_unbounded: float  # with no budget limit: what the deadline and cap alone allow
    providers: list[ProviderQuote]


def wave_sizes(
    *,
    deliver: int,
    passed: Ints,
    generated: Ints,
    left: Ints,
    confidence: float | None = None,
    time_left_s: Floats | None = None,
    round_s: Floats | None = None,
) -> Ints:
    """The funnel's wave-size rule, over arrays: ask for the remaining need over the pass-rate estimate
    (the Beta(2, 1) posterior of this job's verdicts), with a margin, within the candidates left.

    With a ``confidence``, the funnel's confident rule instead, run by run through the funnel's own
    ``waves.wave_size``, from each run's time left and slowest round trip so far (``round_s``; NaN:
    no wave timed yet).
    """
    if confidence is not None:
        if time_left_s is None or round_s is None:
            raise ValueError("a confident wave rule needs each run's time left and round trip")
        sizes = np.empty(passed.size, dtype=np.int64)
        for i in range(passed.size):
            ok, timed = int(passed[i]), float(round_s[i])
            sizes[i] = wave_size(
                needed=deliver - ok,
                passed=ok,
                generated=int(generated[i]),
                left=int(left[i]),
                confidence=confidence,
                time_left_s=float(time_left_s[i]),
                round_s=None if math.isnan(timed) else timed,
            )
        return sizes
    estimate = (PRIOR_PASS + passed) / (PRIOR_PASS + PRIOR_FAIL + generated)
    wanted = np.ceil((deliver - passed) / np.maximum(estimate, MIN_ESTIMATE) * WAVE_SAFETY)
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
    spent: Floats  # what the bought requests cost (those in flight included)
    held: Floats  # what the budget holds for requests in flight on top of their cost
    clock: Floats
    refused_usd: Floats  # the last refused request's price (NaN: no refusal stands)
    stop: Ints  # -1 while running
    bought: Ints  # per provider, over all simulations
    # sims × providers × slots: when each of a provider's slots is next free (-inf: a provider
    # without a slot limit never queues; +inf pads a provider's unused columns). Kept across waves.
    slot_free: Floats
    # sims × providers: what each provider bills per dollar of its expected price in this world
    # (one draw per job: a price level, not per-request noise). Ones without a price risk.
    bill_factor: Floats

    @classmethod
    def start(cls, outlooks: Sequence[ProviderOutlook], sims: int, rng: np.random.Generator) -> _Runs:
        a = np.array([o.alpha for o in outlooks])
        b = np.array([o.beta for o in outlooks])
        zeros = np.zeros(sims, dtype=np.int64)
        true_p = rng.beta(a, b, size=(sims, len(outlooks)))
        sigma = np.array([o.price_sigma for o in outlooks])
        rises = np.array([o.price_rises_only for o in outlooks])
        # Drawn only when some provider has a price risk, so forecasts without one keep their draws.
        if bool((sigma > 0).any()):
            z = rng.standard_normal((sims, len(outlooks)))
            # One-sided for a provider whose price is an unchecked list price (``price_rises_only``):
            # a symmetric spread there made tight budgets count on bills below the list that never came.
            factor = np.exp(np.where(rises, np.abs(z), z) * sigma)
        else:
            factor = np.ones((sims, len(outlooks)))
        return cls(
            true_p=true_p,
            alpha=np.tile(a, (sims, 1)),
            beta=np.tile(b, (sims, 1)),
            passed=zeros.copy(),
            generated=zeros.copy(),
            requested=zeros.copy(),
            refused=zeros.copy(),
            spent=np.zeros(sims),
            held=np.zeros(sims),
            clock=np.zeros(sims),
            refused_usd=np.full(sims, np.nan),
            stop=np.full(sims, -1, dtype=np.int64),
            bought=np.zeros(len(outlooks), dtype=np.int64),
            slot_free=np.tile(_slot_row(outlooks), (sims, 1, 1)),
            bill_factor=factor,
        )


def _slot_row(outlooks: Sequence[ProviderOutlook]) -> Floats:
    """providers × slots: 0 (free from the start) for each slot a provider has, +inf padding the rest,
    -inf throughout for a provider without a limit."""
    width = max((o.slots for o in outlooks if o.slots is not None), default=1)
    row = np.full((len(outlooks), width), np.inf)
    for i, o in enumerate(outlooks):
        if o.slots is None:
            row[i, :] = -np.inf
        else:
            row[i, : o.slots] = 0.0
    return row


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


def holds(outlooks: Sequence[ProviderOutlook], left_usd: Floats, time_left_s: Floats) -> Floats:
    """What the budget holds while each provider's request is in flight (runs × providers), as the
    dispatcher's ``_held`` holds it: the expected price, or for a GPU-second price the worst case
    (the rate with its stop grace times the attempt's timeout, at most ``BILLED_TAIL`` expected runs
    and what is left, at least two expected runs). Holds are why a tight budget runs fewer
    GPU-second requests at once, and stops while a few quotes' worth is still left."""
    price = np.array([o.expected_usd for o in outlooks])
    rate = np.array([o.gpu_second_usd for o in outlooks])
    timed = rate > 0
    if not timed.any():
        return np.broadcast_to(price, (len(left_usd), len(outlooks)))
    quoted = np.array([o.quoted_usd for o in outlooks])
    unit = np.where(timed, rate, 1.0) * (1 + STOP_GRACE)
    run_s = quoted / np.where(timed, rate, 1.0)
    timeout = np.minimum(_TIMEOUT_S, np.maximum(time_left_s, 0.001))[:, None]
    affordable = np.minimum(np.minimum(timeout, left_usd[:, None] / unit), BILLED_TAIL * run_s)
    worst = np.where(affordable < 2 * run_s, np.maximum(quoted, unit * 2 * run_s), unit * affordable)
    return np.where(timed, np.maximum(worst, price), price)


def _route(
    draws: Floats,
    outlooks: Sequence[ProviderOutlook],
    time_left_s: Floats,
    committed: Floats,
    budget: float,
    rng: np.random.Generator,
) -> tuple[Ints, Floats, Floats, Bools]:
    """Where each request ends up, its price, what the budget holds for it, and whether it fits.

    The policy's first choice must fit the budget (else the request is refused); a request it fails
    (free: a 5xx or a failed run) goes to the runner-up, which must fit in turn, as the router
    retries a failed request on the next-ranked provider.
    """
    price = np.array([o.expected_usd for o in outlooks])
    hold = holds(outlooks, budget - committed, time_left_s)
    rows = np.arange(len(draws))
    scores = policy_scores(draws, outlooks, time_left_s)
    if len(outlooks) == 1:
        choice = np.zeros(len(draws), dtype=np.int64)
    else:
        order = np.argsort(scores, axis=1, kind="stable")
        first, second = order[:, 0], order[:, 1]
        failure = np.array([o.failure_rate for o in outlooks])
        fits_first = committed + hold[rows, first] <= budget + 1e-12
        failed = fits_first & (rng.random(len(draws)) < failure[first])
        choice = np.where(failed, second, first)
    held = hold[rows, choice]
    return choice, price[choice], held, committed + held <= budget + 1e-12


@dataclass(slots=True)
class _Slots:
    """The ``concurrency`` slots of the runs playing a wave: when each is free, and the request it
    holds until its verdict arrives (finish time, provider, whether an image came and passed)."""

    free: Floats  # runs × lanes
    finish: Floats
    choice: Ints
    ok: Bools  # the image arrived before the deadline
    good: Bools  # ... and passed
    busy: Bools  # a verdict still to come
    extra: Floats  # what the budget holds for it beyond its price

    @classmethod
    def start(cls, clock: Floats, lanes: int) -> _Slots:
        shape = (clock.size, lanes)
        return cls(
            free=np.tile(clock[:, None], (1, lanes)),
            finish=np.zeros(shape),
            choice=np.zeros(shape, dtype=np.int64),
            ok=np.zeros(shape, dtype=np.bool_),
            good=np.zeros(shape, dtype=np.bool_),
            busy=np.zeros(shape, dtype=np.bool_),
            extra=np.zeros(shape),
        )


def _settle(runs: _Runs, slots: _Slots, index: Ints, sim: Ints, until: Floats) -> None:
    """The verdicts that arrived by ``until`` (per run in ``index``): candidates, passes, and what the
    simulated router learns from them."""
    arrived = slots.busy[index] & (slots.finish[index] <= until[:, None])
    if not arrived.any():
        return
    good = arrived & slots.good[index]
    ok = arrived & slots.ok[index]
    runs.passed[sim] += good.sum(axis=1)
    runs.generated[sim] += ok.sum(axis=1)
    runs.held[sim] -= np.where(arrived, slots.extra[index], 0.0).sum(axis=1)  # settled at its price
    row, lane = np.nonzero(arrived)
    count = runs.alpha.shape[1]
    cell = sim[row] * count + slots.choice[index[row], lane]  # (run, provider), flattened
    size = runs.alpha.size
    runs.alpha += np.bincount(cell, weights=good[row, lane], minlength=size).reshape(runs.alpha.shape)
    failed = ok[row, lane] & ~good[row, lane]
    runs.beta += np.bincount(cell, weights=failed, minlength=size).reshape(runs.beta.shape)
    busy = slots.busy[index]
    busy[arrived] = False
    slots.busy[index] = busy


def _play_wave(
    runs: _Runs,
    rows: Ints,
    sizes: Ints,
    plan: JobPlan,
    outlooks: Sequence[ProviderOutlook],
    budget: float,
    rng: np.random.Generator,
) -> None:
    """One wave of each run in ``rows``, as the funnel plays it: its requests go out in order, each
    when one of the ``concurrency`` slots is free, and each decision (buy at all? which provider?)
    sees only the verdicts that arrived by then. So the requests in flight when K pass are bought
    and billed all the same, as they are in a real job. A refused request leaves its slot free."""
    latency = np.array([o.latency_s for o in outlooks])
    timed = np.array([o.gpu_second_usd > 0 for o in outlooks])
    shape = 1.0 / (LATENCY_CV * LATENCY_CV)
    slots = _Slots.start(runs.clock[rows], plan.concurrency)
    runs.requested[rows] += sizes
    over = np.zeros(rows.size, dtype=np.bool_)  # the wave's remaining requests are skipped
    for step in range(int(sizes.max())):
        index = np.flatnonzero((step < sizes) & ~over)
        if index.size == 0:
            break
        sim = rows[index]
        lane = np.argmin(slots.free[index], axis=1)
        now = slots.free[index, lane]
        _settle(runs, slots, index, sim, now)
        stop = (runs.passed[sim] >= plan.deliver) | (now >= plan.deadline_s)
        over[index[stop]] = True
        index, sim, lane, now = index[~stop], sim[~stop], lane[~stop], now[~stop]
        draws = rng.beta(runs.alpha[sim], runs.beta[sim])  # the router's Thompson draw, per request
        committed = runs.spent[sim] + runs.held[sim]
        choice, cost, hold, buy = _route(draws, outlooks, plan.deadline_s - now, committed, budget, rng)
        refused = ~buy
        runs.refused[sim[refused]] += 1
        runs.refused_usd[sim[refused]] = hold[refused]
        index, sim, lane, now = index[buy], sim[buy], lane[buy], now[buy]
        choice, cost, hold = choice[buy], cost[buy], hold[buy]
        jitter = rng.gamma(shape, 1.0 / shape, size=now.size)
        # A provider with a slot limit starts the request when its first slot frees (its queue).
        queue = runs.slot_free[sim, choice]  # requests × slots
        slot = np.argmin(queue, axis=1)
        start = np.maximum(now, queue[np.arange(now.size), slot])
        finish = start + latency[choice] * jitter
        limited = np.isfinite(queue[np.arange(now.size), slot])
        runs.slot_free[sim[limited], choice[limited], slot[limited]] = finish[limited]
        judged = finish + plan.score_s  # the verdict: the image scored in the request's slot
        # A GPU-second request bills the seconds it ran (within what was held for it); any other
        # its price. One cut off by the deadline counts too: a provider may bill it all the same.
        cost = np.where(timed[choice], np.minimum(cost * jitter, hold), cost)
        # What the bill says beyond the quote (a list price that moved); the router did not see it.
        cost = cost * runs.bill_factor[sim, choice]
        runs.spent[sim] += cost
        runs.held[sim] += hold - cost
        runs.bought += np.bincount(choice, minlength=len(outlooks))
        slots.extra[index, lane] = hold - cost
        ok = finish <= plan.deadline_s
        slots.finish[index, lane] = judged
        slots.choice[index, lane] = choice
        slots.ok[index, lane] = ok
        slots.good[index, lane] = ok & (rng.random(now.size) < runs.true_p[sim, choice])
        slots.busy[index, lane] = True
        # An image that arrived is scored, past the deadline if need be; one cut off frees its slot then.
        slots.free[index, lane] = np.where(ok, judged, plan.deadline_s)
    everyone = np.arange(rows.size)
    _settle(runs, slots, everyone, rows, np.full(rows.size, np.inf))  # the wave waits for them all
    runs.clock[rows] = np.maximum(runs.clock[rows], slots.free.max(axis=1))


def _simulate(
    plan: JobPlan, outlooks: Sequence[ProviderOutlook], *, budget: float, sims: int, seed: int
) -> _Runs:
    rng = np.random.default_rng(seed)
    runs = _Runs.start(outlooks, sims, rng)
    round_s = np.full(sims, np.nan)  # each run's slowest round trip, as the funnel times it
    for _ in range(_MAX_WAVES):
        going = _stop(runs, plan, budget)
        if not going.any():
            return runs
        rows = np.flatnonzero(going)
        left = plan.candidate_cap - (runs.requested[rows] - runs.refused[rows])
        sizes = wave_sizes(
            deliver=plan.deliver,
            passed=runs.passed[rows],
            generated=runs.generated[rows],
            left=left,
            confidence=plan.confidence,
            time_left_s=plan.deadline_s - runs.clock[rows],
            round_s=round_s[rows],
        )
        started = runs.clock[rows].copy()
        _play_wave(runs, rows, sizes, plan, outlooks, budget, rng)
        took = (runs.clock[rows] - started) / np.ceil(sizes / plan.concurrency)
        round_s[rows] = np.fmax(round_s[rows], took)  # NaN (not timed yet) gives way
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
    # A budget no run came near refuses nothing: its runs are the unbounded ones, step for step
    # (near: within what ``concurrency`` requests in flight may hold).
    widest = float(holds(ordered, np.array([math.inf]), np.array([plan.deadline_s])).max())
    within = float(unbounded.spent.max()) + plan.concurrency * widest <= plan.budget_usd
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
        score_s=plan.score_s,
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
