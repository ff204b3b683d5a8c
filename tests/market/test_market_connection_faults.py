"""Faults below HTTP and in the provider's machines: connection resets, unreachable addresses, cold
starts and preempted jobs, as a client meets them on the wire and as the billing log counts them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagefunnel.bench.sim import SimProvider
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.errors import ConnectionLost, SpecError
from imagefunnel.market import Market, MarketServer, ProviderProfile, Scenario, load_scenario
from imagefunnel.market.engine import ImageInput, Job, Phase
from imagefunnel.providers.base import GenerationRequest

FAL_MODEL = "fal-ai/flux/dev"
REPLICATE_MODEL = "black-forest-labs/flux-schnell"
ALWAYS = {"start_s": 0, "end_s": 1e9, "fraction": 1.0}
FAL_AUTH = {"Authorization": "Key fal-test"}
BEARER = {"Authorization": "Bearer r8-test"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fal(name: str, *faults: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "protocol": "fal",
        "models": [FAL_MODEL],
        "price_usd_per_mp": 0.02,
        "queue_s": [0.0, 0.0],
        "processing_s": [0.01, 0.01],
        "faults": list(faults),
    }
    return base | overrides


def replicate(name: str, *faults: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "protocol": "replicate",
        "models": [REPLICATE_MODEL],
        "pricing": {"unit": "gpu_second", "usd": 0.001},
        "queue_s": [0.0, 0.0],
        "processing_s": [4.0, 4.0],
        "faults": list(faults),
    }
    return base | overrides


def scenario(*providers: dict[str, Any]) -> Scenario:
    return Scenario.model_validate({"name": "t", "seed": 5, "providers": list(providers)})


def test_a_reset_drops_the_connection_and_only_a_reset_after_taking_it_is_billed() -> None:
    reset = {**ALWAYS, "kind": "connection_reset"}
    with (
        MarketServer(
            scenario(fal("before", {**reset, "at": "request"}), fal("after", {**reset, "at": "response"})),
            time_factor=0.01,
        ) as server,
        httpx.Client(timeout=5.0) as http,
    ):
        for name in ("before", "after"):
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                http.post(f"{server.base_url(name)}/{FAL_MODEL}", json={"prompt": "p"}, headers=FAL_AUTH)
        server.advance(10.0)
        billed = {record.provider for record in server.billing()}
        stats = server.stats()
    assert billed == {"after"}  # the job it took ran to the end and is billed
    assert stats["before"].resets == 1 and stats["before"].submitted == 0
    assert stats["after"].resets == 1 and stats["after"].completed == 1


@pytest.mark.parametrize(
    ("mode", "error"), [("refused", httpx.ConnectError), ("timeout", httpx.ConnectTimeout)]
)
def test_an_unreachable_provider_refuses_or_never_answers_the_handshake(
    mode: str, error: type[Exception]
) -> None:
    dead = {"kind": "unreachable", "mode": mode}
    with MarketServer(scenario(fal("gone", dead), fal("up")), time_factor=0.01) as server:
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=0.3)) as http, pytest.raises(error):
            http.post(f"{server.base_url('gone')}/{FAL_MODEL}", json={"prompt": "p"}, headers=FAL_AUTH)
        assert server.base_url("up") != server.base_url("gone")
        assert server.stats()["gone"].submitted == 0


@pytest.mark.parametrize(
    ("mode", "error"), [("refused", httpx.ConnectError), ("timeout", httpx.ConnectTimeout)]
)
def test_an_unreachable_comfyui_box_refuses_or_never_answers_the_handshake(
    mode: str, error: type[Exception]
) -> None:
    boxes = [{"name": "gone", "models": ["sdxl"], "unreachable": mode}, {"name": "up", "models": ["sdxl"]}]
    spec = {"name": "t", "seed": 5, "providers": [fal("api")], "comfyui_boxes": boxes}
    with (
        MarketServer(Scenario.model_validate(spec), time_factor=0.01) as server,
        httpx.Client(timeout=httpx.Timeout(5.0, connect=0.3)) as http,
    ):
        with pytest.raises(error):
            http.get(f"{server.base_url('gone')}/system_stats")
        assert http.get(f"{server.base_url('up')}/system_stats").status_code == 200


def test_a_cold_start_on_replicate_is_starting_time_and_not_billed() -> None:
    cold = {**ALWAYS, "kind": "cold_start", "idle_s": 60, "extra_s": [30, 30]}
    clock = Clock()
    market = Market(scenario(replicate("r", cold)), clock=clock)
    first = market.submit("r", REPLICATE_MODEL, ImageInput("p", 512, 512, 1))
    clock.t = 10.0
    during_boot = market.submit("r", REPLICATE_MODEL, ImageInput("p", 512, 512, 2))
    clock.t = 40.0
    warm = market.submit("r", REPLICATE_MODEL, ImageInput("p", 512, 512, 3))
    clock.t = 200.0
    cold_again = market.submit("r", REPLICATE_MODEL, ImageInput("p", 512, 512, 4))
    clock.t = 1000.0
    assert isinstance(first, Job) and isinstance(during_boot, Job)
    assert isinstance(warm, Job) and isinstance(cold_again, Job)
    assert [first.queue_s, during_boot.queue_s, warm.queue_s, cold_again.queue_s] == [30.0, 20.0, 0.0, 30.0]
    # predict_time only: 4 GPU seconds a job, the boot never.
    assert [record.quantity for record in market.billing()] == pytest.approx([4.0] * 4)
    assert market.stats()["r"].cold_starts == 3


def test_a_cold_start_elsewhere_runs_as_part_of_the_job() -> None:
    cold = {**ALWAYS, "kind": "cold_start", "idle_s": 60, "extra_s": [5, 5]}
    market = Market(scenario(fal("f", cold)), clock=Clock())
    job = market.submit("f", FAL_MODEL, ImageInput("p", 512, 512, 1))
    assert isinstance(job, Job) and job.processing_s == pytest.approx(5.01) and job.cold_start_s == 5.0


def test_a_preempted_job_fails_and_bills_the_gpu_time_it_used() -> None:
    preempt = {**ALWAYS, "kind": "preemption", "at_fraction": [0.5, 0.5]}
    clock = Clock()
    market = Market(scenario(replicate("r", preempt), fal("f", preempt)), clock=clock)
    gpu = market.submit("r", REPLICATE_MODEL, ImageInput("p", 512, 512, 1))
    per_mp = market.submit("f", FAL_MODEL, ImageInput("p", 512, 512, 1))
    clock.t = 100.0
    assert isinstance(gpu, Job) and isinstance(per_mp, Job)
    assert market.phase(gpu) is Phase.FAILED and market.phase(per_mp) is Phase.FAILED
    [record] = market.billing()  # the per-megapixel job bills nothing: it has no output
    assert record.request_id == gpu.id and record.quantity == pytest.approx(2.0)


def test_a_preempted_replicate_prediction_says_so_on_the_wire() -> None:
    preempt = {**ALWAYS, "kind": "preemption", "at_fraction": [0.5, 0.5]}
    with (
        MarketServer(scenario(replicate("r", preempt)), time_factor=0.01) as server,
        httpx.Client(timeout=5.0) as http,
    ):
        created = http.post(
            f"{server.base_url('r')}/v1/models/{REPLICATE_MODEL}/predictions",
            json={"input": {"prompt": "p"}},
            headers=BEARER,
        )
        server.advance(10.0)
        body = http.get(created.json()["urls"]["get"], headers=BEARER).json()
    assert body["status"] == "failed" and "preempted" in body["error"]
    assert body["metrics"]["predict_time"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "connection_reset", "start_s": 0, "end_s": 1, "fraction": 1}, "at"),
        ({"kind": "connection_reset", "at": "later", "start_s": 0, "end_s": 1, "fraction": 1}, "at"),
        ({"kind": "cold_start", "idle_s": 1, "extra_s": [5, 1], "start_s": 0, "end_s": 1}, "min > max"),
        ({"kind": "preemption", "at_fraction": [0.2, 1.5], "start_s": 0, "end_s": 1, "fraction": 1}, "1"),
        ({"kind": "unreachable", "mode": "slow"}, "mode"),
        ({"kind": "unreachable", "mode": "refused", "start_s": 0}, "not a known field|Extra"),
    ],
)
def test_bad_connection_faults_are_refused_in_one_line(
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


def test_the_profile_accepts_every_new_kind_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nproviders:\n  - name: a\n    protocol: fal\n    models: [o/m]\n    price_usd_per_mp: 0.01\n"
        "    faults:\n"
        "      - {kind: connection_reset, at: response, start_s: 0, end_s: 5, fraction: 0.5}\n"
        "      - {kind: cold_start, idle_s: 30, extra_s: [10, 20], start_s: 0, end_s: 100}\n"
        "      - {kind: preemption, at_fraction: [0.1, 0.9], start_s: 0, end_s: 100, fraction: 0.2}\n"
        "      - {kind: unreachable, mode: timeout}\n"
    )
    loaded: ProviderProfile = load_scenario(path).providers[0]
    assert [fault.kind for fault in loaded.faults] == [
        "connection_reset",
        "cold_start",
        "preemption",
        "unreachable",
    ]


@pytest.mark.parametrize(("at", "billed"), [("request", False), ("response", True)])
def test_the_simulated_adapter_meets_a_reset_as_a_lost_connection(at: str, billed: bool) -> None:
    # On Together, which lists nothing it took (fal and Replicate find a taken one again: test_sim).
    reset = {**ALWAYS, "kind": "connection_reset", "at": at}
    together = fal("t", reset, protocol="together", models=["black-forest-labs/FLUX.1-schnell"])

    async def main() -> ConnectionLost:
        loop = asyncio.get_running_loop()
        provider = SimProvider(Market(scenario(together), clock=loop.time), "t")
        request = GenerationRequest(
            request_id="r",
            model="black-forest-labs/FLUX.1-schnell",
            prompt="p",
            width=512,
            height=512,
            seed=1,
        )
        with pytest.raises(ConnectionLost) as info:
            await provider.generate(request)
        return info.value

    lost = run_virtual(main())
    assert (lost.charged_usd > 0) is billed
