import pytest

from imagefunnel.routing import BreakerSettings, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kw: float) -> CircuitBreaker:
    settings = {"failure_ratio": 0.5, "min_requests": 4, "consecutive_failures": 3, "open_s": 10.0, **kw}
    return CircuitBreaker(BreakerSettings(**settings), clock=clock)  # type: ignore[arg-type]


def test_trips_on_failure_ratio_only_after_min_requests() -> None:
    clock = Clock()
    b = breaker(clock)
    for ok in (True, False, True):
        b.record(ok)
    assert b.state is BreakerState.CLOSED, "1 failure in 3 requests: below min_requests and ratio"
    b.record(False)
    assert b.state is BreakerState.OPEN, "2 of 4 failed: ratio 0.5 over min_requests trips"
    assert not b.allows()
    assert b.open_remaining_s() == pytest.approx(10.0)


def test_a_low_failure_ratio_never_trips() -> None:
    b = breaker(Clock())
    for i in range(40):
        b.record(i % 4 != 0)  # 25 % failures, never two in a row
    assert b.state is BreakerState.CLOSED


def test_consecutive_failures_trip_below_min_requests() -> None:
    b = breaker(Clock(), min_requests=100)
    for _ in range(3):
        b.record(False)
    assert b.state is BreakerState.OPEN


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock, window_s=30.0)
    b.record(False)
    b.record(False)
    clock.now = 31.0
    b.record(True)
    b.record(True)
    b.record(False)
    assert b.state is BreakerState.CLOSED, "the two old failures are outside the 30 s window"


def test_half_open_allows_one_trial_then_closes_on_success() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    clock.now = 10.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.allows()
    b.on_dispatch()
    assert not b.allows(), "only one trial in flight while half-open"
    b.record(True)
    assert b.state is BreakerState.CLOSED
    assert b.allows()


def test_failed_trial_reopens_for_twice_as_long() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    clock.now = 10.0
    b.on_dispatch()
    b.record(False)
    assert b.state is BreakerState.OPEN
    assert b.open_remaining_s() == pytest.approx(20.0)


def test_retry_after_holds_the_breaker_open_exactly_that_long() -> None:
    clock = Clock()
    b = breaker(clock)
    b.hold(42.0)
    assert b.state is BreakerState.OPEN
    assert b.open_remaining_s() == pytest.approx(42.0)
    b.hold(5.0)
    assert b.open_remaining_s() == pytest.approx(42.0), "a shorter Retry-After does not shorten the hold"
    clock.now = 42.0
    assert b.state is BreakerState.HALF_OPEN


def test_probes_close_a_half_open_breaker_and_count_while_closed() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.probe(False)
    assert b.state is BreakerState.OPEN, "failing probes trip a breaker before traffic does"
    clock.now = 10.0
    b.probe(True)
    assert b.state is BreakerState.CLOSED


def test_late_answers_while_open_are_ignored() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    b.record(True)
    assert b.state is BreakerState.OPEN


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_ratio"):
        BreakerSettings(failure_ratio=0.0)
    with pytest.raises(ValueError, match="max_open_s"):
        BreakerSettings(open_s=10.0, max_open_s=5.0)
