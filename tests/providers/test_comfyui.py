"""ComfyUIProvider and check_server against emulated ComfyUI boxes over real loopback HTTP/websockets."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from imagefunnel.errors import BadOutput, ConnectionLost, ProviderTimeout, ProviderUnavailable, SpecError
from imagefunnel.market.comfyui_app import ComfyUIBox, ComfyUIServer
from imagefunnel.market.defects import Defect
from imagefunnel.market.images import AssetLibrary
from imagefunnel.providers import comfyui as comfyui_module
from imagefunnel.providers.base import GenerationRequest, PriceUnit, Provider
from imagefunnel.providers.comfyui import (
    ComfyUIProvider,
    ComfyUISettings,
    SamplerSettings,
    abandoned_charge,
    check_server,
)
from imagefunnel.providers.comfyui_workflow import Injection, inject, load_workflow, parse_workflow

TIME_FACTOR = 0.01  # 1 scenario second = 10 ms
PRICE = 2.69  # $/GPU-hour, as configured on both sides


@pytest.fixture(scope="module")
def library() -> AssetLibrary:
    return AssetLibrary()


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # one context: each httpx client then starts in ~1 ms


@pytest.fixture
def start(library: AssetLibrary) -> Iterator[Callable[..., ComfyUIServer]]:
    servers: list[ComfyUIServer] = []

    def _start(**overrides: Any) -> ComfyUIServer:
        config = {"name": f"box{len(servers)}", "seed": 9, "usd_per_hour": PRICE} | overrides
        server = ComfyUIServer(ComfyUIBox.model_validate(config), time_factor=TIME_FACTOR, library=library)
        server.start()
        servers.append(server)
        return server

    yield _start
    threads = [threading.Thread(target=server.stop) for server in servers]  # ~0.2 s each: in parallel
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def shared(library: AssetLibrary) -> Iterator[ComfyUIServer]:
    box = ComfyUIBox(name="shared", seed=9, usd_per_hour=PRICE)
    with ComfyUIServer(box, time_factor=TIME_FACTOR, library=library) as server:
        yield server


@pytest.fixture
async def client(tls: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, verify=tls) as http:
        yield http


def comfy(box: ComfyUIServer, client: httpx.AsyncClient, **overrides: Any) -> ComfyUIProvider:
    options: dict[str, Any] = {
        "usd_per_hour": PRICE,
        "poll_interval_s": 0.01,
        "timeout_s": 5.0,
        "sampler": SamplerSettings(steps=4),
    }
    return ComfyUIProvider(name=box.box.name, base_url=box.url, client=client, **(options | overrides))


def req(
    seed: int = 1, *, width: int = 256, height: int = 256, refs: tuple[bytes, ...] = ()
) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"job-{seed}",
        model="sdxl",
        prompt="studio headshot, soft light",
        width=width,
        height=height,
        seed=seed,
        reference_images=refs,
    )


def billed(box: ComfyUIServer, prompt_id: str) -> float:
    return next(record.usd for record in box.billing() if record.prompt_id == prompt_id)


# -- the happy paths ----------------------------------------------------------------------------
async def test_generate_returns_the_image_and_the_gpu_time_it_cost(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    provider = comfy(shared, client)
    assert isinstance(provider, Provider)

    generation = await provider.generate(req(11, width=320, height=256))

    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (320, 256) and img.format == "PNG"
    assert generation.content_type == "image/png"
    record = next(r for r in shared.billing() if r.prompt_id == generation.provider_request_id)
    assert record.outcome == "success" and record.gpu_seconds > 0
    assert generation.charged_usd == pytest.approx(record.usd)
    assert generation.meta["via"] == "websocket" and generation.meta["price_unit"] == "gpu_second"
    assert float(generation.meta["gpu_seconds"]) == pytest.approx(record.gpu_seconds)
    truth = shared.truth(generation.provider_request_id)
    assert (truth.width, truth.height, truth.seed) == (320, 256, 11)


async def test_resubmitted_request_is_cached_and_free(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    provider = comfy(shared, client)
    first = await provider.generate(req(12))
    again = await provider.generate(req(12))
    other = await provider.generate(req(13))

    assert again.image == first.image
    assert again.charged_usd == 0 and billed(shared, again.provider_request_id) == 0
    assert again.meta["cached_nodes"] == "7"
    assert other.image != first.image and other.charged_usd > 0
    assert shared.truth(again.provider_request_id) == shared.truth(first.provider_request_id)


async def test_reference_image_is_uploaded_and_loaded(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 120, 90)).save(buf, format="PNG")
    provider = comfy(shared, client)

    generation = await provider.generate(req(14, refs=(buf.getvalue(),)))

    history = (await client.get(f"{shared.url}/history/{generation.provider_request_id}")).json()
    graph = history[generation.provider_request_id]["prompt"][2]
    loaded = next(node["inputs"]["image"] for node in graph.values() if node["class_type"] == "LoadImage")
    assert loaded.startswith("imagefunnel/ref_") and loaded.endswith(".png")
    listed = (await client.get(f"{shared.url}/object_info/LoadImage")).json()
    assert loaded in listed["LoadImage"]["input"]["required"]["image"][0]
    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (256, 256)
    assert (await provider.capabilities()).supports_reference_images


async def test_concurrent_clients_each_get_their_own_prompt(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    first, second = comfy(shared, client), comfy(shared, client)
    a, b = await asyncio.gather(first.generate(req(15)), second.generate(req(16)))
    assert a.provider_request_id != b.provider_request_id
    assert shared.truth(a.provider_request_id).seed == 15 and shared.truth(b.provider_request_id).seed == 16
    assert a.charged_usd == pytest.approx(billed(shared, a.provider_request_id))
    assert b.charged_usd == pytest.approx(billed(shared, b.provider_request_id))


async def test_broadcast_events_of_anonymous_prompts_are_ignored(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    # A prompt without client_id has its events broadcast to every socket, ours included.
    theirs = inject(load_workflow("txt2img"), Injection(width=256, height=256, steps=100, seed=17))
    response = await client.post(f"{shared.url}/prompt", json={"prompt": theirs})
    their_id = response.json()["prompt_id"]

    ours = await comfy(shared, client).generate(req(18))

    assert ours.provider_request_id != their_id
    assert shared.truth(ours.provider_request_id).seed == 18
    assert (await client.get(f"{shared.url}/history/{their_id}")).json()  # theirs ran first, to the end


async def test_settings_build_a_working_provider(shared: ComfyUIServer, client: httpx.AsyncClient) -> None:
    settings = ComfyUISettings.model_validate(
        {"usd_per_hour": PRICE, "steps": 3, "negative_prompt": "blurry"}
    )
    provider = ComfyUIProvider.from_settings(
        settings,
        name="from-config",
        base_url=shared.url,
        model="sdxl",
        timeout_s=5.0,
        poll_interval_s=0.01,
        token="t",
    )
    try:
        generation = await provider.generate(req(19))
    finally:
        await provider.aclose()
    assert generation.charged_usd == pytest.approx(billed(shared, generation.provider_request_id))
    history = (
        await httpx.AsyncClient(verify=tls).get(f"{shared.url}/history/{generation.provider_request_id}")
    ).json()
    graph = history[generation.provider_request_id]["prompt"][2]
    assert graph["3"]["inputs"]["steps"] == 3 and graph["7"]["inputs"]["text"] == "blurry"
    with pytest.raises(ValidationError):
        ComfyUISettings.model_validate({"usd_per_hour": PRICE, "stepz": 3})


async def test_charges_add_up_to_the_box_bill(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(seconds_per_step=0.2, load_s=5.0)
    provider = comfy(box, client)
    generations = [await provider.generate(req(seed)) for seed in (21, 22, 23)]
    assert sum(g.charged_usd for g in generations) == pytest.approx(sum(r.usd for r in box.billing()))
    assert [r.prompt_id for r in box.billing()] == [g.provider_request_id for g in generations]


# -- failures -----------------------------------------------------------------------------------
async def test_validation_error_names_node_and_input(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    wrong_checkpoint = comfy(
        shared, client, sampler=SamplerSettings(steps=4, checkpoint="missing.safetensors")
    )
    with pytest.raises(ProviderUnavailable) as info:
        await wrong_checkpoint.generate(req(31))
    assert "node 4 (CheckpointLoaderSimple) input 'ckpt_name': Value not in list" in str(info.value)
    assert info.value.charged_usd == 0

    no_steps = comfy(shared, client, sampler=SamplerSettings(steps=0))
    with pytest.raises(
        ProviderUnavailable, match=r"node 3 \(KSampler\) input 'steps': Value 0 smaller than min of 1"
    ):
        await no_steps.generate(req(32))


async def test_runtime_error_is_unavailable_and_charges_the_time_it_ran(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(error_rate=1.0)
    with pytest.raises(
        ProviderUnavailable, match=r"node 3 \(KSampler\): torch.OutOfMemoryError: CUDA out of memory"
    ):
        await comfy(box, client).generate(req(33))
    [record] = box.billing()
    assert record.outcome == "error" and record.usd > 0


async def test_runtime_error_charge_matches_the_bill(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(error_rate=1.0)
    with pytest.raises(ProviderUnavailable) as info:
        await comfy(box, client).generate(req(34))
    assert info.value.charged_usd == pytest.approx(box.billing()[0].usd)


async def test_timeout_interrupts_our_running_prompt(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(hang_rate=1.0)
    with pytest.raises(ProviderTimeout) as info:
        await comfy(box, client, timeout_s=0.5).generate(req(35))
    [record] = box.billing()  # a hung sampler stops at once when interrupted
    assert record.outcome == "interrupted"
    assert info.value.charged_usd == pytest.approx(record.usd) and record.usd > 0
    queue = (await client.get(f"{box.url}/queue")).json()
    assert queue == {"queue_running": [], "queue_pending": []}


async def test_timeout_while_queued_deletes_ours_and_spares_the_running_prompt(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(hang_rate=1.0)
    graph = inject(load_workflow("txt2img"), Injection(width=256, height=256, steps=4, seed=1))
    response = await client.post(f"{box.url}/prompt", json={"prompt": graph, "client_id": "someone-else"})
    theirs = response.json()["prompt_id"]

    with pytest.raises(ProviderTimeout) as info:
        await comfy(box, client, timeout_s=0.3).generate(req(36))

    queue = (await client.get(f"{box.url}/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [theirs]  # not interrupted by us
    assert queue["queue_pending"] == []  # ours was withdrawn
    assert info.value.charged_usd == 0  # it never ran
    await client.post(f"{box.url}/interrupt", json={"prompt_id": theirs})


async def test_cancellation_withdraws_the_prompt(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(hang_rate=1.0)
    task = asyncio.create_task(comfy(box, client).generate(req(37)))
    await _until_running(box, client)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [record.outcome for record in box.billing()] == ["interrupted"]


@pytest.mark.parametrize("outcome", ["success", "timeout"])
async def test_a_cancellation_while_the_websocket_closes_carries_the_known_charge(
    start: Callable[..., ComfyUIServer],
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    # The caller's own timeout lands after the outcome is known, while the socket closes: what the
    # box billed must still reach the router, or it books the prompt as free.
    box = start(hang_rate=1.0) if outcome == "timeout" else start()
    closing = asyncio.Event()
    close = comfyui_module._close

    async def slow_close(attempt: Any) -> None:
        if box.billing():  # the prompt has ended and is billed
            closing.set()
            await asyncio.sleep(5)
        await close(attempt)

    monkeypatch.setattr(comfyui_module, "_close", slow_close)
    provider = comfy(box, client, timeout_s=0.5) if outcome == "timeout" else comfy(box, client)
    task = asyncio.create_task(provider.generate(req(48)))
    await asyncio.wait_for(closing.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    [record] = box.billing()
    assert abandoned_charge(info.value) == pytest.approx(record.usd) and record.usd > 0


# A box whose checkpoint load takes 60 scenario seconds (0.6 s here) and whose sampler is quick: a
# request given up during the load is interrupted, but the load runs to its end before it stops.
SLOW_LOAD = {"load_s": 60.0, "node_s": 0.0, "seconds_per_step": 0.5}


async def test_timeout_mid_node_is_charged_until_the_interrupt_lands(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(**SLOW_LOAD)
    with pytest.raises(ProviderTimeout) as info:
        await comfy(box, client, timeout_s=0.3).generate(req(50))

    [record] = box.billing()  # already there: the adapter waited for the server's own record
    assert record.outcome == "interrupted" and record.gpu_seconds == pytest.approx(60.0)
    assert round(info.value.charged_usd, 2) == round(record.usd, 2)
    assert info.value.charged_usd == pytest.approx(record.usd)


async def test_cancel_mid_node_is_charged_until_the_interrupt_lands(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(**SLOW_LOAD)
    provider = comfy(box, client)
    caught: list[asyncio.CancelledError] = []

    async def attempt() -> None:  # as the dispatcher calls it: the cancellation passes through here
        try:
            await provider.generate(req(51))
        except asyncio.CancelledError as exc:
            caught.append(exc)
            raise

    task = asyncio.create_task(attempt())
    await _until_running(box, client)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [record] = box.billing()
    assert record.outcome == "interrupted" and record.gpu_seconds == pytest.approx(60.0)
    [cancelled] = caught
    assert abandoned_charge(cancelled) == pytest.approx(record.usd)
    assert abandoned_charge(asyncio.CancelledError()) is None  # nothing known: the caller's bound


async def test_unconfirmed_interrupt_charges_the_time_since_submission_and_a_margin(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(load_s=300.0, node_s=0.0)  # 3 s before the interrupt can land
    provider = comfy(box, client, timeout_s=0.3, interrupt_wait_s=0.2)
    submitted: list[float] = []
    began = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await provider.generate(req(52), on_submitted=lambda _: submitted.append(time.monotonic()))
    ended = time.monotonic()

    per_second = PRICE / 3600
    # At least the time since submission (it ran all along, as far as we know), at most that and 25 %.
    assert info.value.charged_usd >= (began + 0.3 + 0.2 - submitted[0]) * per_second
    assert info.value.charged_usd <= (ended - began) * 1.25 * per_second
    assert box.billing() == []  # the server has not finished the node yet


async def test_cancelled_twice_then_closed_leaves_no_stray_error(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    # Ctrl-C: the runner cancels every task (perhaps more than once), then closes the clients.
    box = start(**SLOW_LOAD)
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    provider = ComfyUIProvider(  # owns its HTTP client, as configured providers do
        name=box.box.name,
        base_url=box.url,
        usd_per_hour=PRICE,
        poll_interval_s=0.01,
        sampler=SamplerSettings(steps=4),
    )
    caught: list[asyncio.CancelledError] = []

    async def attempt() -> None:
        try:
            await provider.generate(req(53))
        except asyncio.CancelledError as exc:
            caught.append(exc)
            raise

    task = asyncio.create_task(attempt())
    await _until_running(box, client)
    task.cancel()
    await asyncio.sleep(0.05)  # now waiting for the interrupt to land
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await provider.aclose()
    gc.collect()

    assert errors == []
    [record] = box.billing()  # the withdrawal went on after the second cancel, and landed
    assert record.outcome == "interrupted"
    charge = abandoned_charge(caught[0])
    assert charge is not None and charge > 0  # a bound on the time it had run, not nothing


async def test_history_is_read_only_after_the_final_executing(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(history_delay_s=20)  # 0.2 s in which /history/{id} is still {} after execution_success
    generation = await comfy(box, client).generate(req(38))
    assert generation.meta["via"] == "websocket"
    assert generation.charged_usd == pytest.approx(billed(box, generation.provider_request_id))


async def test_dropped_websocket_falls_back_to_polling_history(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(ws_drop_rate=1.0, history_delay_s=5)
    generation = await comfy(box, client).generate(req(39))
    assert generation.meta["via"] == "polling"
    assert generation.charged_usd == pytest.approx(billed(box, generation.provider_request_id))
    with Image.open(io.BytesIO(generation.image)) as img:
        assert img.size == (256, 256)


async def test_a_reset_submit_the_box_queued_is_followed_and_charged_as_billed(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    # The box queues the prompt, then the POST /prompt connection is reset before its answer.
    box = start(reset_rate=1.0)
    named: list[str] = []
    generation = await comfy(box, client).generate(
        req(46), on_submitted=lambda s: named.append(s.provider_request_id)
    )
    [record] = box.billing()
    assert named == [record.prompt_id] == [generation.provider_request_id]
    assert generation.charged_usd == pytest.approx(record.usd) and record.usd > 0


async def test_a_lost_submit_the_box_never_queued_costs_nothing(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start()

    def submits(request: httpx.Request) -> bool:
        return request.method == "POST" and request.url.path.endswith("/prompt")

    # A stale keep-alive connection the server closed as the submit went out: it never arrived.
    async with httpx.AsyncClient(transport=_DroppingTransport(submits), timeout=5.0) as http:
        with pytest.raises(ConnectionLost, match="never queued") as info:
            await comfy(box, http).generate(req(47))
    assert info.value.charged_usd == 0.0 and box.billing() == []


class _DroppingTransport(httpx.AsyncHTTPTransport):
    """A real transport that drops the requests ``drop`` picks, before they reach the server."""

    def __init__(self, drop: Callable[[httpx.Request], bool]) -> None:
        super().__init__()
        self._drop = drop

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._drop(request):
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return await super().handle_async_request(request)


@pytest.mark.parametrize(
    ("seed", "kind", "reason"),
    [(40, Defect.TRUNCATED, "not a usable image"), (42, Defect.BLACK, "entirely black")],
)
async def test_garbage_output_is_bad_output_and_billed(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient, seed: int, kind: Defect, reason: str
) -> None:
    box = start(garbage_rate=1.0, seed=seed)  # the box seed picks the kind of garbage
    with pytest.raises(BadOutput, match=reason) as info:
        await comfy(box, client).generate(req(seed))
    [record] = box.billing()
    assert info.value.charged_usd == pytest.approx(record.usd) and record.usd > 0
    assert box.truth(record.prompt_id).defect is kind


async def test_outage_fails_generate_quote_and_health(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(outages=[{"start_s": 0, "end_s": 1e9}])
    provider = comfy(box, client)
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.generate(req(44))
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.quote(req(44))
    health = await provider.health()
    assert not health.ok and "503" in health.detail


async def test_nothing_listening_is_unavailable(client: httpx.AsyncClient) -> None:
    url = _closed_port_url()
    provider = ComfyUIProvider(name="gone", base_url=url, usd_per_hour=PRICE, client=client)
    with pytest.raises(ProviderUnavailable, match="websocket"):
        await provider.generate(req(45))
    assert not (await provider.health()).ok


# -- quote and health ---------------------------------------------------------------------------
async def test_quote_learns_gpu_time_and_sees_the_queue(
    start: Callable[..., ComfyUIServer], client: httpx.AsyncClient
) -> None:
    box = start(seconds_per_step=1.0, load_s=0.0, node_s=0.0)
    provider = comfy(box, client, seconds_per_step=0.05, queue_ttl_s=0.0)
    seeded = await provider.quote(req(46))
    assert seeded.unit is PriceUnit.PER_GPU_SECOND
    assert seeded.unit_price_usd == pytest.approx(PRICE / 3600)
    assert seeded.usd == pytest.approx(4 * 0.05 * PRICE / 3600)

    await provider.generate(req(46))
    learned = await provider.quote(req(47))
    assert learned.usd > seeded.usd  # 1 s per step observed, pulled towards it

    blocker = inject(load_workflow("txt2img"), Injection(width=256, height=256, steps=10_000, seed=2))
    await client.post(f"{box.url}/prompt", json={"prompt": blocker, "client_id": "other"})
    behind = inject(load_workflow("txt2img"), Injection(width=256, height=256, steps=10_000, seed=3))
    await client.post(f"{box.url}/prompt", json={"prompt": behind, "client_id": "other"})
    estimate = await provider.estimate(req(48))
    assert estimate.queue_depth >= 1 and estimate.queue_wait_s > 0
    assert estimate.latency_s == pytest.approx(estimate.queue_wait_s + estimate.exec_s)
    assert estimate.usd == pytest.approx(learned.usd)  # waiting behind others costs us nothing
    await client.post(f"{box.url}/queue", json={"clear": True})
    await client.post(f"{box.url}/interrupt", json={})


async def test_health_reports_version_device_and_queue(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    health = await comfy(shared, client).health()
    assert health.ok
    assert (
        "ComfyUI 0.3.64" in health.detail and "H100" in health.detail and "queue 0 running" in health.detail
    )


# -- check_server ---------------------------------------------------------------------------------
async def test_check_server_is_green_on_a_working_box(
    shared: ComfyUIServer, client: httpx.AsyncClient
) -> None:
    report = await check_server(shared.url, client=client)
    assert report.ok, report.lines()
    assert [step.name for step in report.steps] == [
        "system_stats",
        "object_info",
        "prompt",
        "history",
        "view",
    ]
    assert report.comfyui_version == "0.3.64" and report.device is not None and "H100" in report.device
    assert "as expected" in report.steps[-1].detail
    assert report.lines()[-1].endswith(": ready")

    with_upload = await check_server(shared.url, workflow="load_scale_save", client=client)
    assert with_upload.ok, with_upload.lines()
    assert "upload" in [step.name for step in with_upload.steps]
    assert "256x192" in with_upload.steps[-1].detail


@pytest.mark.parametrize(
    ("box", "step", "reason"),
    [
        ({"missing_nodes": ["ImageBlur"]}, "object_info", "lacks node class(es) ImageBlur"),
        ({"outages": [{"start_s": 0, "end_s": 1e9}]}, "system_stats", "HTTP 503"),
        ({"garbage_rate": 1.0, "seed": 1}, "view", "not a usable image"),
        ({"garbage_rate": 1.0, "seed": 42}, "view", "centre pixel (0, 0, 0)"),
        ({"ws_drop_rate": 1.0}, "prompt", "websocket closed"),
    ],
)
async def test_check_server_is_red_with_a_precise_reason(
    start: Callable[..., ComfyUIServer],
    client: httpx.AsyncClient,
    box: dict[str, Any],
    step: str,
    reason: str,
) -> None:
    server = start(**box)
    report = await check_server(server.url, client=client)
    assert not report.ok
    failure = report.failure
    assert failure is not None and failure.name == step and reason in failure.detail
    assert report.steps[-1] is failure  # it stops at the first failure
    assert report.lines()[-1].endswith(f"not usable: {failure.detail}")


async def test_check_server_on_nothing_listening(client: httpx.AsyncClient) -> None:
    report = await check_server(_closed_port_url(), client=client)
    assert not report.ok and report.failure is not None
    assert report.failure.name == "system_stats" and "ConnectError" in report.failure.detail


# -- workflows ----------------------------------------------------------------------------------
def test_injection_finds_nodes_by_role_not_id() -> None:
    graph = json.loads(json.dumps(load_workflow("txt2img").graph))
    renamed = {f"n{node_id}": node for node_id, node in graph.items()}
    for node in renamed.values():
        for key, value in node["inputs"].items():
            if isinstance(value, list):
                node["inputs"][key] = [f"n{value[0]}", value[1]]
    flow = parse_workflow(json.dumps(renamed), name="renamed")
    params = Injection(
        prompt="a cat", negative="blurry", seed=7, width=640, height=384, steps=9, checkpoint="x.ckpt"
    )

    out = inject(flow, params)

    assert out["n6"]["inputs"]["text"] == "a cat" and out["n7"]["inputs"]["text"] == "blurry"
    assert out["n3"]["inputs"]["seed"] == 7 and out["n3"]["inputs"]["steps"] == 9
    assert (out["n5"]["inputs"]["width"], out["n5"]["inputs"]["height"]) == (640, 384)
    assert out["n4"]["inputs"]["ckpt_name"] == "x.ckpt"
    assert flow.graph == renamed  # the workflow itself is untouched


def test_img2img_injection_sizes_the_scaler_and_sets_the_reference() -> None:
    out = inject(
        load_workflow("img2img"), Injection(width=512, height=768, image="imagefunnel/ref.png", denoise=0.5)
    )
    assert out["10"]["inputs"]["image"] == "imagefunnel/ref.png"
    assert (out["11"]["inputs"]["width"], out["11"]["inputs"]["height"]) == (512, 768)
    assert out["3"]["inputs"]["denoise"] == 0.5


def test_workflow_errors_are_precise(tmp_path: Any) -> None:
    with pytest.raises(SpecError, match="no LoadImage node"):
        inject(load_workflow("txt2img"), Injection(image="x.png"))
    with pytest.raises(SpecError, match="no sampler node"):
        inject(load_workflow("load_scale_save"), Injection(seed=3))
    with pytest.raises(SpecError, match="UI format"):
        parse_workflow(json.dumps({"nodes": [], "links": []}), name="ui")
    with pytest.raises(SpecError, match="node 1 needs 'class_type' and 'inputs'"):
        parse_workflow(json.dumps({"1": {"inputs": {}}}), name="bad")
    with pytest.raises(SpecError, match="unknown workflow"):
        load_workflow("nope")
    with pytest.raises(SpecError, match="no sampler node"):  # at configuration time, not per request
        ComfyUIProvider(name="x", base_url="http://gpu:8188", usd_per_hour=1.0, workflow="load_scale_save")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(load_workflow("empty_blur_save").graph))
    assert load_workflow(path).classes() == {"EmptyImage", "ImageBlur", "ImageInvert", "SaveImage"}


# -- helpers ------------------------------------------------------------------------------------
async def _until_running(box: ComfyUIServer, client: httpx.AsyncClient) -> None:
    for _ in range(300):
        if (await client.get(f"{box.url}/queue")).json()["queue_running"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the prompt never started")


def _closed_port_url() -> str:
    with socket.socket() as sock:  # bind, learn the port, close: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
