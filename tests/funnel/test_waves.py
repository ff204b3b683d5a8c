"""The confident wave rule: a beta-binomial tail, the least wave meeting it, and its target."""

from __future__ import annotations

import math

import pytest

from imagefunnel.funnel.waves import (
    MIN_WAVE_TARGET,
    at_least,
    confident_wave_size,
    rounds_left,
    wave_target,
)


def direct(needed: int, n: int, alpha: float, beta: float) -> float:
    """P(at least ``needed`` of ``n`` pass), the pass rate ~ Beta(alpha, beta): the binomial tail
    averaged over the Beta, term by term, sum over k of C(n, k) B(k + alpha, n - k + beta) / B(alpha, beta)."""

    def log_b(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return sum(
        math.comb(n, k) * math.exp(log_b(k + alpha, n - k + beta) - log_b(alpha, beta))
        for k in range(needed, n + 1)
    )


@pytest.mark.parametrize(
    ("needed", "n", "alpha", "beta"),
    [(1, 1, 2.0, 1.0), (12, 12, 2.0, 1.0), (12, 30, 2.0, 1.0), (3, 40, 5.0, 30.0), (30, 80, 40.0, 22.0)],
)
def test_the_tail_is_the_binomial_averaged_over_the_posterior(
    needed: int, n: int, alpha: float, beta: float
) -> None:
    assert at_least(needed, n, alpha, beta) == pytest.approx(direct(needed, n, alpha, beta), abs=1e-12)


def test_a_sure_pass_rate_is_the_binomial_tail() -> None:
    # A posterior this narrow is the binomial at its mean: P(at least 8 of 10 at p = 0.8).
    binomial = sum(math.comb(10, k) * 0.8**k * 0.2 ** (10 - k) for k in range(8, 11))
    assert at_least(8, 10, 8e6, 2e6) == pytest.approx(binomial, abs=1e-5)


@pytest.mark.parametrize(
    ("needed", "alpha", "beta", "target"),
    [
        (12, 2.0, 1.0, 0.5),
        (12, 2.0, 1.0, 0.85),
        (5, 10.0, 12.0, 0.99),
        (1, 3.0, 6.0, 0.75),
        (40, 30.0, 9.0, 0.95),
    ],
)
def test_the_wave_is_the_least_that_meets_the_target(
    needed: int, alpha: float, beta: float, target: float
) -> None:
    n = confident_wave_size(needed, alpha, beta, target, 10_000)
    assert direct(needed, n, alpha, beta) >= target
    assert n == needed or direct(needed, n - 1, alpha, beta) < target


def test_a_wave_never_asks_for_more_than_the_candidates_left() -> None:
    # Under the Beta(2, 1) prior a pass rate below 0.1 keeps a chance of 1 %: 0.99 asks for the cap.
    assert confident_wave_size(12, 2.0, 1.0, 0.99, 48) == 48
    assert confident_wave_size(12, 2.0, 1.0, 0.5, 8) == 8
    assert confident_wave_size(3, 2.0, 1.0, 0.5, 0) == 1  # the funnel stops before; never zero


def test_fewer_round_trips_left_ask_for_a_surer_wave() -> None:
    assert rounds_left(100.0, None) is None
    assert rounds_left(100.0, 30.0) == 3
    assert rounds_left(10.0, 30.0) == 1  # the wave being sized is itself a round trip
    assert rounds_left(math.inf, 30.0) is None
    assert wave_target(0.99, None) == MIN_WAVE_TARGET  # nothing timed yet
    assert wave_target(0.99, 1) == pytest.approx(0.99)  # the last round trip: the confidence
    assert wave_target(0.99, 2) == pytest.approx(0.9)  # 1 - 0.1 ** 2 = 0.99
    assert wave_target(0.99, 50) == MIN_WAVE_TARGET  # time for many: even odds, least spend
    sizes = [confident_wave_size(12, 8.0, 5.0, wave_target(0.99, r), 200) for r in (50, 3, 2, 1)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
