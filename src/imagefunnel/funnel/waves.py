"""Wave sizes for a job with a ``confidence``: the least wave that meets the need with a target chance.

The funnel stops buying as soon as K have passed, so a wave larger than the remaining need costs
only the requests still in flight when the K-th verdict arrives; a wave that falls short costs no
money, only a round trip (the wave drains, then the next one starts). Money favours small waves,
the deadline favours few. So each wave asks for the smallest N with

    P(at least ``needed`` of N pass | Beta(alpha, beta) posterior of the pass rate) >= target

(a beta-binomial tail, computed exactly), where the target grows as the round trips the deadline
still allows shrink: with R left, a wave meeting its need with probability q leaves the job short
after all of them with probability at most about (1 - q)^R (each later wave is re-sized to what is
still missing, so this overstates the risk), hence q = 1 - (1 - confidence)^(1/R); the last round
trip asks for the confidence itself. The target never drops below :data:`MIN_WAVE_TARGET`: the
round trip is measured on the job's own few waves, providers slow down, and a wave less likely
than not to finish the job mostly adds waves. Until a wave has been timed the rule has no round
trip to count with and uses that floor (the quote, which plays the same rule, says what the
deadline then allows). The budget sets no target of its own: a purchase it cannot hold is refused
whatever the wave's size, and a wave that falls short has bought only what the need took.
"""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = [
    "MIN_ESTIMATE",
    "MIN_WAVE_TARGET",
    "PRIOR_FAIL",
    "PRIOR_PASS",
    "WAVE_SAFETY",
    "at_least",
    "confident_wave_size",
    "pass_rate_estimate",
    "rounds_left",
    "wave_size",
    "wave_target",
]

MIN_WAVE_TARGET = 0.5
# Prior on a job's pass rate before any verdict: Beta(2, 1), mean 0.67.
PRIOR_PASS, PRIOR_FAIL = 2.0, 1.0
WAVE_SAFETY = 1.15  # without a confidence: a little more than the expected need, no trailing tiny wave
MIN_ESTIMATE = 0.05  # a wave is never sized for a pass rate below this


def pass_rate_estimate(passed: int, generated: int) -> float:
    """The job's pass rate as its waves see it: the mean of the Beta(2, 1) prior updated with its
    ``passed`` of ``generated`` verdicts."""
    return (PRIOR_PASS + passed) / (PRIOR_PASS + PRIOR_FAIL + generated)


def wave_size(
    *,
    needed: int,
    passed: int,
    generated: int,
    left: int,
    confidence: float | None,
    time_left_s: float,
    round_s: float | None,
) -> int:
    """The next wave of a job that still needs ``needed``, has ``passed`` of ``generated`` and may
    buy ``left`` more: with a ``confidence``, the least wave meeting the need with the chance the
    round trips left call for; without one, the need over the pass-rate estimate with a margin.
    The funnel's rule, and the one every simulation of a job plays (forecast, benchmarks)."""
    if confidence is not None:
        target = wave_target(confidence, rounds_left(time_left_s, round_s))
        return confident_wave_size(needed, PRIOR_PASS + passed, PRIOR_FAIL + generated - passed, target, left)
    wanted = math.ceil(needed / max(pass_rate_estimate(passed, generated), MIN_ESTIMATE) * WAVE_SAFETY)
    return max(1, min(wanted, left))


def rounds_left(time_left_s: float, round_s: float | None) -> int | None:
    """Round trips that fit in ``time_left_s`` at ``round_s`` each (at least one; None: not timed,
    or no deadline to count against)."""
    if round_s is None or round_s <= 0 or not math.isfinite(time_left_s):
        return None
    return max(1, math.floor(time_left_s / round_s))


def wave_target(confidence: float, rounds: int | None) -> float:
    """The chance this wave should meet the remaining need with, ``rounds`` round trips left."""
    if rounds is None:
        return MIN_WAVE_TARGET
    return max(MIN_WAVE_TARGET, 1.0 - math.pow(1.0 - confidence, 1.0 / rounds))


def at_least(needed: int, n: int, alpha: float, beta: float) -> float:
    """P(at least ``needed`` passes among ``n`` | the pass rate ~ Beta(alpha, beta)), exactly.

    The beta-binomial pmf from k = 0 by its ratio pmf(k+1)/pmf(k) = (n-k)(k+alpha) / ((k+1)(n-k-1+beta)),
    summed below ``needed``: ``needed`` terms, whatever ``n``.
    """
    if needed <= 0:
        return 1.0
    if n < needed:
        return 0.0
    # log pmf(0) = log B(alpha, n + beta) - log B(alpha, beta); kept in logs, as pmf(0) underflows
    # for a large n while the terms near the need do not.
    log_pmf = math.lgamma(n + beta) + math.lgamma(alpha + beta)
    log_pmf -= math.lgamma(n + alpha + beta) + math.lgamma(beta)
    below = 0.0
    for k in range(needed):
        below += math.exp(log_pmf)
        log_pmf += math.log((n - k) * (k + alpha) / ((k + 1) * (n - k - 1 + beta)))
    return max(0.0, 1.0 - below)


@lru_cache(maxsize=65_536)
def confident_wave_size(needed: int, alpha: float, beta: float, target: float, left: int) -> int:
    """The smallest N ≤ ``left`` meeting ``needed`` with probability ≥ ``target`` (``left``: none does).

    The tail grows with N, so a binary search over [needed, left] finds it. Cached: the forecast asks
    the same question for many simulated runs in the same state.
    """
    if left <= needed or at_least(needed, left, alpha, beta) < target:
        return max(1, left)
    low, high = needed, left  # at_least(high) >= target
    while low < high:
        mid = (low + high) // 2
        if at_least(needed, mid, alpha, beta) >= target:
            high = mid
        else:
            low = mid + 1
    return low
