"""The completion estimate (queue wait + service time) and the router's admission by deadline."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from imagefunnel.errors import NoProviderAvailable
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.routing import NullLedger, ProviderTraits, RouteContext, Router
from imagefunnel.routing.capacity import CapacityBook
from imagefunnel.routing.dispatch import TimeoutSettings
from imagefunnel.testing import MockProvider


def req(i: int = 0) -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", model="m", prompt="p", width=512, height=512)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def learn(book: CapacityBook, name: str, samples: list[tuple[int, float]], *, slots: int | None) -> None:
    """Feed completions: each (requests ahead at dispatch, latency)."""
    for ahead, latency in samples:
        for _ in range(ahead):
            book.started(name, "m")
        ticket = book.started(name, "m")
        book.finished(name, "m", ticket, latency_s=latency, slots=slots)
        # The ones ahead finished too (successes: nothing learned from them here).
        for other in list(book._state(name, "m").flights):
            book._state(name, "m").flights.pop(other)


def test_one_slot_box_waits_one_service_time_per_request_ahead() -> None:
    book = CapacityBook(clock=Clock())
    learn(book, "box", [(0, 5.0), (2, 15.0), (1, 10.0)], slots=1)
    for _ in range(3):
        book.started("box", "m")
    done = book.completion("box", "m", slots=1, prior_service_s=99.0)
    assert done.ahead == 3
    assert done.service_s == pytest.approx(5.0)
    assert done.queue_wait_s == pytest.approx(15.0)
    assert done.total_s == pytest.approx(20.0)


def test_slots_share_the_queue() -> None:
    book = CapacityBook(clock=Clock())
    for _ in range(5):
        book.started("gpu", "m")
    done = book.completion("gpu", "m", slots=4, prior_service_s=2.0)
    # 5 ahead on 4 slots: the 6th waits for 2 of them, half a service time each on average.
    assert done.queue_wait_s == pytest.approx(2.0 * 2 / 4)
    idle = CapacityBook(clock=Clock()).completion("gpu", "m", slots=4, prior_service_s=2.0)
    assert idle.queue_wait_s == 0.0 and idle.total_s == 2.0


def test_unknown_capacity_is_learned_from_latency_against_requests_ahead() -> None:
    rng = random.Random(1)
    book = CapacityBook(clock=Clock())
    queued = [(a, 4.0 + 4.0 * a + rng.uniform(-0.3, 0.3)) for a in [0, 3, 1, 5, 2, 7, 0, 4, 6, 1] * 3]
    learn(book, "box", queued, slots=None)
    hosted = [(a, rng.uniform(3.0, 5.0)) for a in [0, 3, 1, 5, 2, 7, 0, 4, 6, 1] * 3]
    learn(book, "api", hosted, slots=None)
    for name in ("box", "api"):
        for _ in range(6):
            book.started(name, "m")
    box = book.completion("box", "m", slots=None, prior_service_s=10.0)
    api = book.completion("api", "m", slots=None, prior_service_s=10.0)
    assert box.service_s == pytest.approx(4.0, abs=0.5)
    assert box.queue_wait_s == pytest.approx(24.0, rel=0.1)
    # A hosted API's latency does not grow with requests ahead: no queue, and its latency is what the
    # router knew before (here the prior it was given).
    assert (api.queue_wait_s, api.service_s) == (0.0, 10.0)


def test_before_any_completion_the_prior_stands_and_requests_ahead_count_nothing_unknown() -> None:
    book = CapacityBook(clock=Clock())
    book.started("api", "m")
    done = book.completion("api", "m", slots=None, prior_service_s=3.0)
    assert (done.queue_wait_s, done.service_s) == (0.0, 3.0)


def test_a_reported_queue_depth_counts_other_clients_and_expires() -> None:
    clock = Clock()
    book = CapacityBook(clock=clock)
    book.started("box", "m")  # ours, included in the box's own count
    book.note_depth("box", "m", 4, service_s=2.0)
    done = book.completion("box", "m", slots=1, prior_service_s=10.0)
    assert done.ahead == 4 and done.service_s == 2.0 and done.queue_wait_s == pytest.approx(8.0)
    clock.t = 60.0
    assert book.ahead("box", "m") == 1  # the report is stale: only ours are known


def test_a_request_that_leaves_unserved_moves_the_later_ones_up() -> None:
    book = CapacityBook(clock=Clock())
    first = book.started("box", "m")
    second = book.started("box", "m")
    third = book.started("box", "m")
    book.finished("box", "m", second, latency_s=None, slots=1)  # timed out in the queue
    book.finished("box", "m", first, latency_s=5.0, slots=1)
    book.finished("box", "m", third, latency_s=10.0, slots=1)
    # third had 2 ahead at dispatch, but one left unserved: 1 ahead, so 10 s is 2 services of 5 s.
    assert book.completion("box", "m", slots=1, prior_service_s=99.0).service_s == pytest.approx(5.0)
    assert book.in_flight("box", "m") == 0


# -- the router -------------------------------------------------------------------------------


def provider(name: str, price: float, kind: type[MockProvider] = MockProvider) -> MockProvider:
    def handler(r: GenerationRequest) -> Generation:
        return Generation(r.request_id, name, r.model, b"img", price, 0.01, f"{name}-{r.request_id}")

    return kind(handler, name=name, models=frozenset({"m"}), price_usd=price)


def router(clock: Clock, **kw: object) -> Router:
    traits = {
        "box": ProviderTraits(expected_latency_s=5.0, slots=1),
        "api": ProviderTraits(expected_latency_s=2.0),
    }
    return Router(
        [provider("box", 0.001), provider("api", 0.02)],
        ledger=NullLedger(),
        clock=clock,
        traits=traits,
        seed=0,
        **kw,  # type: ignore[arg-type]
    )


def busy(r: Router, requests: int) -> None:
    for _ in range(requests):
        r.capacity.started("box", "m")


def at(deadline: float) -> RouteContext:
    return RouteContext(job_id="j", wave=1, deadline=deadline)


async def test_the_cheap_box_wins_while_its_queue_finishes_before_the_deadline() -> None:
    clock = Clock()
    r = router(clock)
    busy(r, 3)  # 3 ahead: done in 20 s
    generation = await r.generate(req(), at(100.0))
    assert generation.provider == "box"


async def test_a_queue_past_the_deadline_spills_to_the_dearer_provider() -> None:
    clock = Clock()
    r = router(clock)
    busy(r, 3)  # done in 20 s, the deadline is in 12 s
    generation = await r.generate(req(), at(12.0))
    assert generation.provider == "api"
    blind = router(clock, capacity_aware=False)
    busy(blind, 3)
    assert (await blind.generate(req(), at(12.0))).provider == "box"  # the router before


async def test_a_queue_expected_to_finish_just_before_the_deadline_spills_too() -> None:
    """The queue wait is an estimate (each run ahead varies): a request whose mean completion lands
    just inside the deadline misses it about half the time, and is then cut off unserved."""
    clock = Clock()
    r = router(clock)
    busy(r, 3)  # 15 s of queue + 5 s of service: 20 s, the deadline is in 21 s
    assert (await r.generate(req(), at(21.0))).provider == "api"
    roomy = router(clock)
    busy(roomy, 3)
    assert (await roomy.generate(req(), at(30.0))).provider == "box"


async def test_when_nothing_completes_in_time_the_late_options_are_still_tried() -> None:
    clock = Clock()
    r = router(clock)
    busy(r, 3)
    generation = await r.generate(req(), at(1.0))  # neither the box (20 s) nor the API (2 s) makes it
    assert generation.provider in {"box", "api"}


class SlowBox(MockProvider):
    """Answers after a real pause: the time a prompt spends behind others in a box's queue."""

    async def generate(self, request: GenerationRequest) -> Generation:
        await asyncio.sleep(0.3)
        return await super().generate(request)


async def test_a_request_waiting_in_a_box_queue_is_not_cut_off_for_waiting() -> None:
    clock = Clock()
    slow = provider("box", 0.001, SlowBox)
    traits = {"box": ProviderTraits(expected_latency_s=0.1, slots=1)}
    r = Router(
        [slow], ledger=NullLedger(), clock=clock, traits=traits, seed=0, timeouts=TimeoutSettings(max_s=0.1)
    )
    busy(r, 3)  # 3 ahead of it: about 0.3 s of queue before its 0.1 s of service
    generation = await r.generate(req(), at(100.0))
    assert generation.provider == "box"
    idle = Router(
        [slow], ledger=NullLedger(), clock=clock, traits=traits, seed=0, timeouts=TimeoutSettings(max_s=0.1)
    )
    with pytest.raises(NoProviderAvailable, match=r"ProviderTimeout|no result|timeout"):
        await idle.generate(req(1), at(100.0))  # no queue expected: 0.3 s is past its limit


@dataclass(frozen=True)
class Estimate:
    queue_depth: int
    exec_s: float


class QueueingProvider(MockProvider):
    """Reports its queue, as the ComfyUI adapter does through ``estimate``."""

    depth = 0

    async def estimate(self, request: GenerationRequest) -> Estimate:
        return Estimate(queue_depth=self.depth, exec_s=4.0)


async def test_a_server_that_reports_its_queue_is_one_slot_and_its_depth_counts() -> None:
    def handler(r: GenerationRequest) -> Generation:
        return Generation(r.request_id, "comfy", r.model, b"img", 0.001, 0.01, f"c-{r.request_id}")

    comfy = QueueingProvider(handler, name="comfy", models=frozenset({"m"}), price_usd=0.001)
    comfy.depth = 5  # other clients' prompts: 5 × 4 s ahead
    clock = Clock()
    r = Router(
        [comfy, provider("api", 0.02)],
        ledger=NullLedger(),
        clock=clock,
        traits={"api": ProviderTraits(expected_latency_s=2.0)},
    )
    assert r.slots("comfy") == 1
    assert (await r.generate(req(0), at(10.0))).provider == "api"  # 24 s > 10 s
    comfy.depth = 0
    clock.t = 5.0  # the next look at its queue
    assert (await r.generate(req(1), at(100.0))).provider == "comfy"
