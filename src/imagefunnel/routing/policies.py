"""Routing policies: one interface, five answers to "which provider first, and then which?".

A policy ranks the *options* the router assembled (capable, permitted, breaker closed or half-open;
each with its expected price, pass-rate posterior, health and expected latency) and returns them in
the order to try: the first is dispatched, the rest are the fallback chain. Policies never await
and never do I/O: a decision is a few microseconds of arithmetic.

=====================  ==========================================================================
``single``             one fixed provider, no fallback (the seed's baseline)
``round_robin``        rotate through the options; fall back along the rotation
``cheapest_per_call``  lowest quote first (router v0; what LiteLLM's cost routing approximates)
``cost_per_accepted``  lowest expected price / P(pass), with a deadline-aware latency penalty
                       (the default): P(pass) is a Thompson draw from the learned Beta posterior
``oracle``             hindsight for benchmarks: ranks by the *true* cost per accepted image the
                       market scenario implies; no router can know it, every router is measured
                       against it
=====================  ==========================================================================
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imagefunnel.routing.health import HealthView
from imagefunnel.routing.passrates import PassRate
from imagefunnel.routing.pricebook import PricedQuote

__all__ = [
    "CheapestPerCallPolicy",
    "CostPerAcceptedPolicy",
    "Hindsight",
    "Option",
    "OraclePolicy",
    "Policy",
    "RoundRobinPolicy",
    "SinglePolicy",
    "Situation",
    "policy_names",
]

_MIN_PASS = 0.02  # a posterior draw near zero must not make a price look infinite and NaN-prone


@dataclass(frozen=True, slots=True)
class Option:
    """One provider a request could go to, with everything a policy may weigh."""

    provider: str
    model: str
    priced: PricedQuote
    pass_rate: PassRate
    health: HealthView
    expected_latency_s: float  # until the result: queue wait, service time and cold start
    queue_wait_s: float = 0.0  # the part of it spent waiting behind requests ahead (``routing.capacity``)

    @property
    def quoted_usd(self) -> float:
        return self.priced.quote.usd

    @property
    def expected_usd(self) -> float:
        return self.priced.expected_usd


@dataclass(frozen=True, slots=True)
class Situation:
    """The request's circumstances: the router's clock, the time left to the job's deadline."""

    now: float
    time_left_s: float
    use_case: str


class Policy(Protocol):
    """Rank options in the order to try them (drop the ones never to try)."""

    name: str

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]: ...


class SinglePolicy:
    """Always ``provider`` (default: the first the router was given); never falls back."""

    name = "single"

    def __init__(self, provider: str | None = None) -> None:
        self.provider = provider

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]:
        if self.provider is None:
            return list(options[:1])
        return [option for option in options if option.provider == self.provider]


class RoundRobinPolicy:
    """Each request starts one further along the list; the rest of the rotation is its fallback."""

    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]:
        if not options:
            return []
        ordered = sorted(options, key=lambda option: option.provider)
        start = self._turn % len(ordered)
        self._turn += 1
        return ordered[start:] + ordered[:start]


class CheapestPerCallPolicy:
    """Lowest quote first: the price of a call, blind to whether its output will be accepted."""

    name = "cheapest_per_call"

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]:
        return sorted(options, key=lambda option: (option.quoted_usd, option.provider))


class CostPerAcceptedPolicy:
    """Lowest expected cost per *accepted* image: expected price / P(pass), times a latency penalty.

    P(pass) is drawn from each option's posterior (Thompson sampling), so a provider with little
    evidence is tried in proportion to the chance it is the best, and a well-known one is not
    second-guessed. The latency penalty is ``1 + weight × (expected time / time left)²`` (×4 when
    the expected time exceeds the time left): nothing while the deadline is far, decisive near it.
    Expected time counts retries: latency / (1 − error rate); the latency includes the wait behind
    the requests queued there (a busy one-slot box is as slow as its queue).
    """

    name = "cost_per_accepted"

    def __init__(self, *, seed: int = 0, thompson: bool = True, latency_weight: float = 1.0) -> None:
        self._rng = random.Random(seed)
        self._thompson = thompson
        self._latency_weight = latency_weight

    def score(self, option: Option, situation: Situation) -> float:
        rate = option.pass_rate
        p = rate.sample(self._rng) if self._thompson else rate.mean
        cost = option.expected_usd / max(p, _MIN_PASS)
        expected_s = option.expected_latency_s / max(0.05, 1.0 - option.health.error_rate)
        if situation.time_left_s <= 0 or not math.isfinite(situation.time_left_s):
            return cost
        load = expected_s / situation.time_left_s
        penalty = 1.0 + self._latency_weight * load * load
        return cost * (penalty * 4.0 if load > 1.0 else penalty)

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]:
        scored = [(self.score(option, situation), option.provider, option) for option in options]
        scored.sort(key=lambda item: (item[0], item[1]))
        return [option for _, _, option in scored]


class Hindsight(Protocol):
    """The truth a benchmark knows: the real expected cost per accepted image of a provider now
    (``None``: it cannot deliver now, e.g. it is inside an outage)."""

    def cost_per_accepted(self, provider: str, model: str, now: float) -> float | None: ...


class OraclePolicy:
    """Ranks by the scenario's true cost per accepted image (benchmarks only)."""

    name = "oracle"

    def __init__(self, hindsight: Hindsight) -> None:
        self._hindsight = hindsight

    def rank(self, options: Sequence[Option], situation: Situation) -> list[Option]:
        def key(option: Option) -> tuple[bool, float, str]:
            cost = self._hindsight.cost_per_accepted(option.provider, option.model, situation.now)
            return (cost is None, math.inf if cost is None else cost, option.provider)

        return sorted(options, key=key)


def policy_names() -> list[str]:
    return ["single", "round_robin", "cheapest_per_call", "cost_per_accepted", "oracle"]
