"""Timed fault windows: 429s with a Retry-After, 5xx bursts and HTTP-200 garbage, on a hand-driven clock,
through the in-process provider and over the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from market_fixtures import Clock

from imagefunnel.bench.sim import SimProvider
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.errors import BadOutput, ProviderUnavailable, RateLimited, SpecError
from imagefunnel.market import Market, MarketServer, ProviderProfile, Scenario, load_scenario
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import ImageInput, Job, Rejection
from imagefunnel.market.images import AssetLibrary
from imagefunnel.providers.base import GenerationRequest

MODEL = "fal-ai/flux/dev"
SERVER_ERRORS = {500, 502, 503, 504}


def profile(*faults: dict[str, Any], **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": "p",
        "protocol": "fal",
        "models": [MODEL],
        "price_usd_per_mp": 0.02,
        "queue_s": [1.0, 1.0],
        "processing_s": [2.0, 2.0],
        "faults": list(faults),
    }
    return ProviderProfile.model_validate(base | overrides)


def market(
    library: AssetLibrary,
    *faults: dict[str, Any],
    clock: Clock | None = None,
    seed: int = 1,
    **overrides: Any,
) -> Market:
    scenario = Scenario(name="t", seed=seed, providers=(profile(*faults, **overrides),))
    return Market(scenario, clock=clock or Clock(), library=library)


def burst(m: Market, n: int = 200, prompt: str = "headshot") -> list[Job | Rejection]:
    return [m.submit("p", MODEL, ImageInput(prompt, 512, 512, seed)) for seed in range(n)]


def refused(outcomes: Sequence[Job | Rejection]) -> list[Rejection]:
    return [o for o in outcomes if isinstance(o, Rejection)]


def finished(outcomes: Sequence[Job | Rejection]) -> list[Job]:
    return [o for o in outcomes if isinstance(o, Job)]


RATE_LIMIT = {"start_s": 10, "end_s": 20, "kind": "rate_limit", "fraction": 0.5, "retry_after_s": [1, 5]}
SERVER_ERROR = {"start_s": 10, "end_s": 20, "kind": "server_error", "fraction": 0.3}
BLACK = {"start_s": 10, "end_s": 20, "kind": "garbage", "fraction": 0.4, "garbage": "black"}


@pytest.mark.parametrize("t", [0.0, 9.99, 20.0, 100.0])
def test_no_window_fires_outside_its_time(library: AssetLibrary, t: float) -> None:
    clock = Clock()
    m = market(library, RATE_LIMIT, SERVER_ERROR, BLACK, clock=clock)
    clock.t = t
    outcomes = burst(m, 100)
    assert refused(outcomes) == []
    assert not any(job.truth.garbage for job in finished(outcomes))


def test_rate_limit_window_answers_429_with_a_retry_after_in_range(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, RATE_LIMIT, clock=clock)
    clock.t = 10.0
    limited = refused(burst(m))
    assert 0.4 < len(limited) / 200 < 0.6
    assert {r.status_code for r in limited} == {429}
    waits = [r.retry_after_s for r in limited]
    assert all(w is not None and 1.0 <= w <= 5.0 for w in waits)
    assert len(set(waits)) > 10  # drawn per request, not one fixed value
    assert m.stats()["p"].rate_limited == len(limited)


def test_the_retry_after_is_in_wall_seconds_and_arrivals_inside_it_are_counted(library: AssetLibrary) -> None:
    clock = Clock()
    once = {**RATE_LIMIT, "end_s": 11, "fraction": 1.0, "retry_after_s": [4, 4]}
    scenario = market(library, once).scenario
    m = Market(scenario, time_factor=0.5, clock=clock, library=library)
    clock.t = 5.0  # scenario t = 10
    [first] = refused(burst(m, 1))
    assert first.retry_after_s == pytest.approx(2.0)  # 4 scenario seconds at half a wall second each
    clock.t = 6.0  # scenario t = 12: inside the 4 s it was told to wait
    burst(m, 1, prompt="impatient")
    clock.t = 7.0  # scenario t = 14: on time
    burst(m, 1, prompt="polite")
    assert m.stats()["p"].before_retry_after == 1


def test_server_error_window_is_a_5xx_burst_that_is_never_billed(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, SERVER_ERROR, clock=clock)
    clock.t = 15.0
    errors = refused(burst(m))
    assert 0.22 < len(errors) / 200 < 0.38
    assert {r.status_code for r in errors} <= SERVER_ERRORS and len({r.status_code for r in errors}) > 1
    assert all(r.retry_after_s is None for r in errors)
    clock.t = 100.0
    assert len(m.billing()) == 200 - len(errors)
    assert m.stats()["p"].rejected_5xx == len(errors)


@pytest.mark.parametrize(("kind", "defect"), [("black", Defect.BLACK), ("truncated", Defect.TRUNCATED)])
def test_garbage_window_answers_200_with_the_chosen_kind_and_bills_it(
    library: AssetLibrary, kind: str, defect: Defect
) -> None:
    clock = Clock()
    m = market(library, {**BLACK, "garbage": kind}, clock=clock)
    clock.t = 12.0
    jobs = finished(burst(m))
    assert len(jobs) == 200
    junk = [job for job in jobs if job.truth.garbage]
    assert 0.3 < len(junk) / 200 < 0.5
    assert {job.truth.defect for job in junk} == {defect}
    clock.t = 100.0
    billed = m.billing()
    assert len(billed) == 200 and sum(record.garbage for record in billed) == len(junk)
    assert m.stats()["p"].garbage == len(junk)


def test_garbage_bytes_are_black_or_cut_short(library: AssetLibrary) -> None:
    clock = Clock()
    always = {**BLACK, "fraction": 1.0}
    black = market(library, always, clock=clock)
    cut = market(library, {**always, "garbage": "truncated"}, clock=clock)
    clean = market(library, clock=clock)
    clock.t = 12.0
    [dark], [short], [good] = (finished(burst(m, 1)) for m in (black, cut, clean))
    assert black.image_bytes(dark) != clean.image_bytes(good)
    assert len(cut.image_bytes(short)) < len(clean.image_bytes(good))


def test_draws_are_seeded_and_repeatable(library: AssetLibrary) -> None:
    def run(seed: int) -> list[object]:
        clock = Clock()
        m = market(library, RATE_LIMIT, SERVER_ERROR, BLACK, clock=clock, seed=seed)
        clock.t = 15.0
        return [o if isinstance(o, Rejection) else (o.id, o.truth) for o in burst(m, 60)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_a_window_leaves_the_requests_it_misses_as_they_were(library: AssetLibrary) -> None:
    clock = Clock()
    plain = market(library, clock=clock, defect_rate=0.5, queue_s=[0, 5], garbage_rate=0.1)
    faulty = market(library, BLACK, clock=clock, defect_rate=0.5, queue_s=[0, 5], garbage_rate=0.1)
    clock.t = 12.0
    pairs = list(zip(finished(burst(plain, 100)), finished(burst(faulty, 100)), strict=True))
    missed = [(a, b) for a, b in pairs if not b.truth.garbage]
    assert 40 < len(missed) < 70
    assert all(
        (a.queue_s, a.processing_s, a.truth) == (b.queue_s, b.processing_s, b.truth) for a, b in missed
    )


def test_the_profile_names_the_windows_open_at_an_instant() -> None:
    p = profile(RATE_LIMIT, {**BLACK, "start_s": 15, "end_s": 30})
    assert [f.kind for f in p.faults_at(12)] == ["rate_limit"]
    assert [f.kind for f in p.faults_at(15)] == ["rate_limit", "garbage"]
    assert p.faults_at(30) == ()


def test_a_retry_in_the_window_gets_a_fresh_draw(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, RATE_LIMIT, clock=clock)
    clock.t = 10.0
    outcomes = [m.submit("p", MODEL, ImageInput("same", 512, 512, 7)) for _ in range(20)]
    assert refused(outcomes) and finished(outcomes)


def test_refusals_win_over_garbage_and_steady_rates_still_apply(library: AssetLibrary) -> None:
    clock = Clock()
    m = market(library, {**BLACK, "fraction": 1.0}, {**SERVER_ERROR, "fraction": 1.0}, clock=clock)
    clock.t = 10.0
    assert len(refused(burst(m, 20))) == 20
    steady = market(library, {**BLACK, "start_s": 500, "end_s": 600}, clock=clock, error_5xx_rate=0.5)
    assert 0.35 < len(refused(burst(steady))) / 200 < 0.65


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"start_s": 0, "end_s": 10, "kind": "brownout", "fraction": 0.5}, "kind"),
        (
            {"start_s": 10, "end_s": 5, "kind": "server_error", "fraction": 0.5},
            r"ends \(5.0\) before it starts",
        ),
        ({"start_s": 0, "end_s": 10, "kind": "server_error", "fraction": 0}, "fraction"),
        ({"start_s": 0, "end_s": 10, "kind": "garbage", "fraction": 0.5}, "garbage"),
        ({"start_s": 0, "end_s": 10, "kind": "garbage", "fraction": 0.5, "garbage": "grey"}, "garbage"),
        (
            {"start_s": 0, "end_s": 10, "kind": "rate_limit", "fraction": 0.5, "retry_after_s": [5, 1]},
            "min > max",
        ),
        (
            {"start_s": 0, "end_s": 10, "kind": "server_error", "fraction": 0.5, "retry_after_s": [1, 2]},
            "not a known field",
        ),
    ],
)
def test_bad_fault_windows_are_refused_in_one_line(
    tmp_path: Path, fault: dict[str, Any], message: str
) -> None:
    entry = ", ".join(f"{key}: {value}" for key, value in fault.items())
    text = (
        "name: t\nproviders:\n  - {name: a, protocol: fal, models: [o/m], price_usd_per_mp: 0.01,\n"
        f"     faults: [{{{entry}}}]}}\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value) and "providers[0].faults[0]" in str(caught.value)


# -- what an adapter sees --------------------------------------------------------------------------


def req(i: int) -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", model=MODEL, prompt="p", width=512, height=512, seed=i)


def sim_outcomes(*faults: dict[str, Any]) -> list[object]:
    always = [{**fault, "start_s": 0, "fraction": 1.0} for fault in faults]

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        scenario = Scenario(name="t", seed=1, providers=(profile(*always),))
        provider = SimProvider(Market(scenario, clock=loop.time), "p")
        try:
            return [await provider.generate(req(0))]
        except (RateLimited, ProviderUnavailable, BadOutput) as exc:
            return [exc]

    return run_virtual(main())


def test_the_simulated_adapter_surfaces_each_fault_as_its_wire_error() -> None:
    [limited] = sim_outcomes({**RATE_LIMIT, "retry_after_s": [2.2, 2.2]})
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 3  # whole seconds, rounded up
    [failed] = sim_outcomes(SERVER_ERROR)
    assert isinstance(failed, ProviderUnavailable) and "HTTP 5" in str(failed)
    [cut] = sim_outcomes({**BLACK, "garbage": "truncated"})
    assert isinstance(cut, BadOutput) and cut.charged_usd > 0  # billed, like any garbage output
    [dark] = sim_outcomes(BLACK)
    assert not isinstance(dark, Exception)  # a black image decodes: the scorer has to catch it


def test_the_http_emulator_answers_each_fault_on_the_wire() -> None:
    always = {"start_s": 0, "end_s": 1e9, "fraction": 1.0}
    scenario = Scenario(
        name="wire",
        seed=3,
        providers=(
            profile({**always, "kind": "rate_limit", "retry_after_s": [2.2, 2.2]}, name="limited"),
            profile({**always, "kind": "server_error"}, name="broken"),
            profile({**always, "kind": "garbage", "garbage": "black"}, name="junk", queue_s=[0, 0]),
        ),
    )
    with MarketServer(scenario, time_factor=1.0) as server, httpx.Client(timeout=5.0) as http:
        auth = {"Authorization": "Key fal-test"}

        def post(name: str) -> httpx.Response:
            return http.post(f"{server.base_url(name)}/{MODEL}", json={"prompt": "p"}, headers=auth)

        limited = post("limited")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
        assert post("broken").status_code in SERVER_ERRORS
        handle = post("junk")
        assert handle.status_code == 200
        server.advance(10)
        assert http.get(handle.json()["response_url"], headers=auth).status_code == 200
        [record] = server.market.billing()
        assert record.garbage and server.market.truth(record.request_id).defect is Defect.BLACK
