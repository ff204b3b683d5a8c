"""The market core on a hand-driven clock: phases, faults, billing and truth without HTTP."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from market_fixtures import Clock

from imagefunnel.market import Market, ProviderProfile, Scenario
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import ImageInput, Job, Phase, Rejection
from imagefunnel.market.images import AssetLibrary

MODEL = "fal-ai/flux/dev"


def market(library: AssetLibrary, clock: Clock | None = None, seed: int = 1, **overrides: Any) -> Market:
    profile: dict[str, Any] = {
        "name": "p",
        "protocol": "fal",
        "models": [MODEL],
        "price_usd_per_mp": 0.02,
        "queue_s": [1.0, 1.0],
        "processing_s": [2.0, 2.0],
    }
    scenario = Scenario(name="t", seed=seed, providers=(ProviderProfile.model_validate(profile | overrides),))
    return Market(scenario, clock=clock or Clock(), library=library)


def job(m: Market, seed: int = 0, prompt: str = "headshot") -> Job:
    outcome = m.submit("p", MODEL, ImageInput(prompt, 512, 512, seed))
    assert isinstance(outcome, Job), outcome
    return outcome


def test_defect_rate_and_mix_are_as_configured(library: AssetLibrary) -> None:
    m = market(library, defect_rate=0.3, defect_mix={"blur": 3, "noise": 1})
    truths = [job(m, seed).truth for seed in range(400)]
    kinds = Counter(t.defect for t in truths if t.defect is not None)
    rate = sum(kinds.values()) / len(truths)
    assert 0.24 < rate < 0.36
    assert set(kinds) == {Defect.BLUR, Defect.NOISE}
    assert 2.0 < kinds[Defect.BLUR] / kinds[Defect.NOISE] < 4.5
    assert all(0.5 <= t.strength <= 1.0 for t in truths if t.defect is not None)


def test_runs_are_reproducible_across_instances(library: AssetLibrary) -> None:
    def run(m: Market) -> list[tuple[str, Any, float]]:
        return [(j.id, j.truth, j.queue_s) for j in (job(m, seed) for seed in range(20))]

    options: dict[str, Any] = {"defect_rate": 0.5, "garbage_rate": 0.2, "queue_s": [0, 5]}
    assert run(market(library, **options)) == run(market(library, **options))
    assert run(market(library, **options)) != run(market(library, seed=2, **options))


def test_a_retry_gets_a_fresh_fault_draw_but_the_same_picture(library: AssetLibrary) -> None:
    m = market(library, error_5xx_rate=0.5)
    outcomes = [m.submit("p", MODEL, ImageInput("same", 512, 512, 42)) for _ in range(20)]
    jobs = [o for o in outcomes if isinstance(o, Job)]
    errors = [o for o in outcomes if isinstance(o, Rejection)]
    assert jobs and errors
    assert all(e.status_code in (500, 502, 503, 504) for e in errors)
    assert len({j.truth for j in jobs}) == 1


def test_a_request_queues_runs_and_completes_on_the_clock(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock)
    first, second = job(m, 1), job(m, 2)
    assert m.phase(first) is Phase.QUEUED
    assert (m.queue_position(first), m.queue_position(second)) == (0, 1)
    clock.t = 1.5
    assert m.phase(first) is Phase.RUNNING
    assert m.billing() == []
    clock.t = 3.0
    assert m.phase(first) is Phase.DONE
    [record, _] = m.billing()
    assert record.usd == pytest.approx(0.02 * 0.262144) and record.billed_at_s == pytest.approx(3.0)


def test_time_factor_scales_wall_time(library: AssetLibrary) -> None:
    clock = Clock()
    scenario = market(library).scenario
    m = Market(scenario, time_factor=0.1, clock=clock, library=library)
    j = job(m)
    clock.t = 0.25  # 2.5 scenario seconds: past the queue, mid-processing
    assert m.phase(j) is Phase.RUNNING
    m.advance(1.0)
    assert m.phase(j) is Phase.DONE


def test_only_queued_requests_can_be_cancelled_and_they_are_free(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock)
    queued, running = job(m, 1), job(m, 2)
    clock.t = 0.5
    assert m.cancel(queued)
    clock.t = 1.5
    assert not m.cancel(running)
    clock.t = 10
    assert (m.phase(queued), m.phase(running)) == (Phase.CANCELLED, Phase.DONE)
    assert [r.request_id for r in m.billing()] == [running.id]
    assert m.stats()["p"].cancelled == 1


def test_failed_requests_are_not_billed_but_garbage_is(library: AssetLibrary) -> None:
    clock = Clock()
    failing = market(library, clock, failure_rate=1.0)
    j = job(failing)
    clock.t = 10
    assert failing.phase(j) is Phase.FAILED and failing.billing() == []
    junk = market(library, clock, garbage_rate=1.0)
    g = job(junk)
    clock.t = 20
    assert g.truth.garbage and g.truth.defect in (Defect.BLACK, Defect.TRUNCATED)
    assert [r.garbage for r in junk.billing()] == [True]
    assert junk.stats()["p"].garbage == 1


def test_rate_limit_refills_with_scenario_time(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock, rate_limit_per_s=2.0)
    assert isinstance(m.submit("p", MODEL, ImageInput("a", 512, 512, 1)), Job)
    assert isinstance(m.submit("p", MODEL, ImageInput("a", 512, 512, 2)), Job)
    limited = m.submit("p", MODEL, ImageInput("a", 512, 512, 3))
    assert isinstance(limited, Rejection) and limited.status_code == 429
    assert limited.retry_after_s == pytest.approx(0.5)
    clock.t = 0.5
    assert isinstance(m.submit("p", MODEL, ImageInput("a", 512, 512, 3)), Job)
    assert m.stats()["p"].rate_limited == 1


def test_requests_inside_a_retry_after_are_counted(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock, rate_limit_per_s=1.0)
    m.submit("p", MODEL, ImageInput("a", 512, 512, 1))
    limited = m.submit("p", MODEL, ImageInput("a", 512, 512, 2))
    assert isinstance(limited, Rejection) and limited.retry_after_s == pytest.approx(1.0)
    clock.t = 0.4
    m.submit("p", MODEL, ImageInput("a", 512, 512, 3))  # told to wait until 1.0
    clock.t = 1.0
    assert isinstance(m.submit("p", MODEL, ImageInput("a", 512, 512, 4)), Job)  # on time
    assert m.stats()["p"].before_retry_after == 1


def test_outage_window(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock, outages=[{"start_s": 5, "end_s": 8}])
    assert m.outage("p") is None
    clock.t = 6
    rejection = m.outage("p")
    assert rejection is not None and rejection.status_code == 503
    assert m.stats()["p"].outage_rejections == 1


def test_truth_of_unknown_id_is_a_key_error(library: AssetLibrary) -> None:
    with pytest.raises(KeyError):
        market(library).truth("nope")


def test_missing_seed_is_drawn_and_recorded(library: AssetLibrary) -> None:
    m = market(library)
    outcome = m.submit("p", MODEL, ImageInput("x", 512, 512, None))
    assert isinstance(outcome, Job) and outcome.input.seed is not None
    assert outcome.truth.seed == outcome.input.seed


def test_a_provider_with_slots_queues_requests_beyond_them_first_in_first_out(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock, slots=2)  # queue_s 1, processing_s 2: a slot is held for 3 s
    jobs = [job(m, seed) for seed in range(5)]
    assert [j.slot_wait_s for j in jobs] == [0.0, 0.0, 3.0, 3.0, 6.0]
    assert [j.started_s for j in jobs] == [1.0, 1.0, 4.0, 4.0, 7.0]
    assert [m.queue_position(j) for j in jobs] == [0, 1, 2, 3, 4]
    clock.t = 1.5
    assert [m.phase(j) for j in jobs] == [Phase.RUNNING] * 2 + [Phase.QUEUED] * 3
    assert [m.queue_position(j) for j in jobs[2:]] == [0, 1, 2]
    # First in, first out: a later request gets no slot before the last one ahead got its own (6 s).
    later = job(m, 9)
    assert later.slot_wait_s == pytest.approx(6.0 - 1.5)
    clock.t = 100.0
    records = m.billing()  # each billed once, when it is done
    assert [r.billed_at_s for r in records] == [3.0, 3.0, 6.0, 6.0, 9.0, 9.0]
    assert [r.usd for r in records] == pytest.approx([0.02 * 0.262144] * 6)


def test_a_cancelled_or_expired_request_gives_its_slot_back(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, clock, slots=1)
    first = job(m, 1)
    assert job(m, 2).slot_wait_s == 3.0
    clock.t = 3.0
    cancelled = job(m, 3)
    assert cancelled.slot_wait_s == 3.0  # behind the second one, which holds the slot until 6 s
    clock.t = 3.5
    assert m.cancel(cancelled)
    assert job(m, 4).slot_wait_s == pytest.approx(2.5)  # the cancelled one is skipped
    expiring = m.submit("p", MODEL, ImageInput("headshot", 512, 512, 5), deadline_s=4.0)
    assert isinstance(expiring, Job) and expiring.slot_wait_s == pytest.approx(5.5)
    assert first.slot_wait_s == 0.0
    # Its deadline (7.5 s) ends it while it waits: the next one takes the slot from 9 s, not 12 s.
    assert job(m, 6).slot_wait_s == pytest.approx(9.0 - 3.5)


def test_without_slots_every_request_runs_at_once(library: AssetLibrary) -> None:
    m = market(library)
    assert {job(m, seed).started_s for seed in range(5)} == {1.0}
