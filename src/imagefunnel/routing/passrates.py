"""Learned pass rates per (provider, model, use case): a Beta posterior fed by scorer verdicts.

Each verdict adds one to ``alpha`` (passed) or ``beta`` (rejected). Evidence decays towards the
prior with a half-life, so a provider whose quality changes is re-learned instead of being judged by
last month's outputs forever, and the posterior never grows so confident that it stops exploring.
The book is shared by every job of a process and, through :class:`PassRatePersistence` (the store
implements it), across processes and restarts.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PassRate", "PassRateBook", "PassRateKey", "PassRatePersistence", "PassRatePrior"]


@dataclass(frozen=True, slots=True)
class PassRateKey:
    provider: str
    model: str
    use_case: str


@dataclass(frozen=True, slots=True)
class PassRatePrior:
    """Beta(alpha, beta) before any verdict: the default, Beta(2, 1), is mildly optimistic so a
    provider nobody has tried yet gets tried."""

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("prior alpha and beta must be > 0")


@dataclass(frozen=True, slots=True)
class PassRate:
    """The posterior of one key at ``updated_at`` (seconds on the book's clock)."""

    key: PassRateKey
    alpha: float
    beta: float
    updated_at: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def evidence(self) -> float:
        return self.alpha + self.beta

    def sample(self, rng: random.Random) -> float:
        """One Thompson draw from the posterior."""
        return rng.betavariate(self.alpha, self.beta)


class PassRatePersistence(Protocol):
    """Where the book keeps its posteriors between processes (``store.pass_rates`` implements it)."""

    def load_pass_rates(self) -> Iterable[PassRate]: ...

    def save_pass_rate(self, rate: PassRate) -> None: ...


class PassRateBook:
    """Posteriors of every key seen; an unseen key answers the prior.

    ``clock`` is wall-clock time by default because posteriors outlive the process (decay must be
    measured in real seconds across restarts); the benchmark passes its virtual clock.
    """

    def __init__(
        self,
        *,
        prior: PassRatePrior | None = None,
        half_life_s: float | None = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
        persistence: PassRatePersistence | None = None,
    ) -> None:
        if half_life_s is not None and half_life_s <= 0:
            raise ValueError("half_life_s must be > 0 (or None: no decay)")
        self._prior = prior or PassRatePrior()
        self._half_life_s = half_life_s
        self._clock = clock
        self._persistence = persistence
        self._rates: dict[PassRateKey, PassRate] = {}
        if persistence is not None:
            for rate in persistence.load_pass_rates():
                self._rates[rate.key] = rate

    @property
    def prior(self) -> PassRatePrior:
        return self._prior

    def get(self, key: PassRateKey) -> PassRate:
        """The posterior of ``key`` decayed to now."""
        now = self._clock()
        found = self._rates.get(key)
        if found is None:
            return PassRate(key, self._prior.alpha, self._prior.beta, now)
        return self._decayed(found, now)

    def observe(self, key: PassRateKey, passed: bool, *, weight: float = 1.0) -> PassRate:
        """Add one verdict; persists the new posterior when the book has persistence."""
        current = self.get(key)
        updated = PassRate(
            key,
            current.alpha + (weight if passed else 0.0),
            current.beta + (0.0 if passed else weight),
            current.updated_at,
        )
        self._rates[key] = updated
        if self._persistence is not None:
            self._persistence.save_pass_rate(updated)
        return updated

    def all(self) -> list[PassRate]:
        now = self._clock()
        return [self._decayed(rate, now) for rate in self._rates.values()]

    def _decayed(self, rate: PassRate, now: float) -> PassRate:
        if self._half_life_s is None or now <= rate.updated_at:
            return rate
        keep = math.exp2(-(now - rate.updated_at) / self._half_life_s)
        prior = self._prior
        return PassRate(
            rate.key,
            prior.alpha + (rate.alpha - prior.alpha) * keep,
            prior.beta + (rate.beta - prior.beta) * keep,
            now,
        )
