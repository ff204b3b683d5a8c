import random

import pytest

from imagefunnel.routing import PassRate, PassRateBook, PassRateKey, PassRatePrior

KEY = PassRateKey("p", "m", "headshot")


class Memory:
    def __init__(self, rows: list[PassRate] | None = None) -> None:
        self.rows = {row.key: row for row in rows or []}

    def load_pass_rates(self) -> list[PassRate]:
        return list(self.rows.values())

    def save_pass_rate(self, rate: PassRate) -> None:
        self.rows[rate.key] = rate


def test_unseen_key_answers_the_prior() -> None:
    book = PassRateBook(prior=PassRatePrior(2.0, 1.0), clock=lambda: 0.0)
    assert book.get(KEY).mean == pytest.approx(2 / 3)


def test_verdicts_update_the_posterior_per_key() -> None:
    book = PassRateBook(prior=PassRatePrior(1.0, 1.0), clock=lambda: 0.0, half_life_s=None)
    for passed in (True, True, True, False):
        book.observe(KEY, passed)
    assert (book.get(KEY).alpha, book.get(KEY).beta) == (4.0, 2.0)
    other = PassRateKey("p", "m", "product")
    assert book.get(other).mean == pytest.approx(0.5), "use cases are learned separately"


def test_evidence_decays_towards_the_prior_with_the_half_life() -> None:
    now = [0.0]
    book = PassRateBook(prior=PassRatePrior(1.0, 1.0), clock=lambda: now[0], half_life_s=100.0)
    for _ in range(10):
        book.observe(KEY, False)
    assert book.get(KEY).beta == pytest.approx(11.0)
    now[0] = 100.0
    assert book.get(KEY).beta == pytest.approx(1.0 + 10.0 / 2)
    now[0] = 10_000.0
    assert book.get(KEY).mean == pytest.approx(0.5, abs=1e-6)


def test_thompson_draws_follow_the_posterior() -> None:
    rate = PassRate(KEY, 90.0, 10.0, 0.0)
    rng = random.Random(1)
    draws = [rate.sample(rng) for _ in range(2000)]
    assert sum(draws) / len(draws) == pytest.approx(0.9, abs=0.01)


def test_persistence_loads_and_saves_every_verdict() -> None:
    memory = Memory([PassRate(KEY, 5.0, 5.0, 0.0)])
    book = PassRateBook(clock=lambda: 0.0, persistence=memory)
    assert book.get(KEY).mean == pytest.approx(0.5)
    book.observe(KEY, True)
    assert memory.rows[KEY].alpha == pytest.approx(6.0)
    again = PassRateBook(clock=lambda: 0.0, persistence=memory)
    assert again.get(KEY).alpha == pytest.approx(6.0), "a new process starts from what was learned"


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PassRatePrior(0.0, 1.0)
    with pytest.raises(ValueError):
        PassRateBook(half_life_s=0.0)
