"""The emulated ComfyUI box over real loopback HTTP and websockets, against what a real ComfyUI 0.3.64
server answered: message order, the history quirk, validation shapes, caching,
upload, interrupt, queue, faults and the billing log."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import ssl
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from imagefunnel.market.comfyui_app import ComfyUIBox, ComfyUIServer
from imagefunnel.market.defects import Defect
from imagefunnel.market.images import AssetLibrary
from imagefunnel.providers.comfyui_workflow import load_workflow

TIME_FACTOR = 0.01  # 1 scenario second = 10 ms
Message = dict[str, Any]


@dataclass(frozen=True)
class Box:
    """A running box and an HTTP client factory for it (one TLS context: clients start fast)."""

    server: ComfyUIServer
    tls: ssl.SSLContext

    @property
    def url(self) -> str:
        return self.server.url

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.url, verify=self.tls)


def _stop_all(servers: list[ComfyUIServer]) -> None:
    # Each uvicorn takes ~0.2 s to notice it should exit: stop them side by side.
    threads = [threading.Thread(target=server.stop) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@pytest.fixture
def start(library: AssetLibrary, tls: ssl.SSLContext) -> Iterator[Callable[..., Box]]:
    servers: list[ComfyUIServer] = []

    def _start(**overrides: Any) -> Box:
        box = ComfyUIBox.model_validate({"name": f"box{len(servers)}", "seed": 3} | overrides)
        server = ComfyUIServer(box, time_factor=TIME_FACTOR, library=library)
        server.start()
        servers.append(server)
        return Box(server, tls)

    yield _start
    _stop_all(servers)


@pytest.fixture(scope="module")
def box(library: AssetLibrary, tls: ssl.SSLContext) -> Iterator[Box]:
    """One default box shared by the tests that need nothing special (each uses its own content)."""
    with ComfyUIServer(ComfyUIBox(name="shared", seed=3), time_factor=TIME_FACTOR, library=library) as server:
        yield Box(server, tls)


def blur_graph(color: int = 3381759) -> dict[str, Any]:
    graph = load_workflow("empty_blur_save").graph
    graph["1"]["inputs"]["color"] = color
    return graph


def txt2img_graph(*, steps: int = 4, seed: int = 5, prompt: str = "a studio headshot") -> dict[str, Any]:
    graph = load_workflow("txt2img").graph
    graph["3"]["inputs"].update(steps=steps, seed=seed)
    graph["5"]["inputs"].update(width=256, height=256)
    graph["6"]["inputs"]["text"] = prompt
    return graph


@asynccontextmanager
async def feed(
    url: str, client_id: str | None = None
) -> AsyncIterator[tuple[str, ClientConnection, Message]]:
    """A websocket for ``client_id``, with the status message every connection starts with."""
    cid = client_id or uuid.uuid4().hex
    async with connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={cid}") as ws:
        first = json.loads(await ws.recv())
        yield cid, ws, first


async def collect(ws: ClientConnection, prompt_id: str) -> list[Message | bytes]:
    """Everything the socket receives until ``executing {node: null}`` for ``prompt_id``."""
    out: list[Message | bytes] = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(raw, bytes):
            out.append(raw)
            continue
        message = json.loads(raw)
        out.append(message)
        data = message["data"]
        if message["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
            return out


def types(messages: list[Message | bytes]) -> list[str]:
    return [m["type"] for m in messages if isinstance(m, dict)]


async def submit(http: httpx.AsyncClient, graph: dict[str, Any], client_id: str | None = None) -> str:
    body: dict[str, Any] = {"prompt": graph}
    if client_id is not None:
        body["client_id"] = client_id
    response = await http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["node_errors"] == {}
    return str(response.json()["prompt_id"])


async def run(box: Box, graph: dict[str, Any]) -> tuple[str, list[Message | bytes]]:
    async with feed(box.url) as (cid, ws, _), box.http() as http:
        prompt_id = await submit(http, graph, cid)
        return prompt_id, await collect(ws, prompt_id)


async def wait_for(ws: ClientConnection, kind: str, node: str | None = None) -> Message:
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(raw, bytes):
            continue
        message = json.loads(raw)
        if message["type"] == kind and (node is None or message["data"].get("node") == node):
            return dict(message)


# -- the recorded success path ------------------------------------------------------------------
async def test_success_sends_the_recorded_sequence_and_image(start: Callable[..., Box]) -> None:
    box = start()
    async with feed(box.url) as (cid, ws, first), box.http() as http:
        assert first == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": cid},
        }
        prompt_id = await submit(http, blur_graph(), cid)
        messages = await collect(ws, prompt_id)
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = history["outputs"]["4"]["images"][0]
        data = (await http.get("/view", params=image)).content

    assert types(messages) == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        *["progress_state", "executing", "progress_state"] * 3,
        "progress_state",
        "executing",
        "executed",
        "progress_state",
        "execution_success",
        "status",
        "executing",
    ]  # fmt: skip  (start and finish of each node: two progress_state at every node boundary)
    states = [m["data"]["nodes"] for m in messages if isinstance(m, dict) and m["type"] == "progress_state"]
    assert [node["state"] for node in states[-1].values()] == ["finished"] * 4
    assert states[0]["1"]["state"] == "running" and states[1]["1"]["state"] == "finished"
    executing = [m["data"]["node"] for m in messages if isinstance(m, dict) and m["type"] == "executing"]
    assert executing == ["1", "2", "3", "4", None]
    assert image == {"filename": "empty_blur_00001_.png", "subfolder": "imagefunnel", "type": "output"}
    assert history["status"]["status_str"] == "success" and history["status"]["completed"]
    assert [name for name, _ in history["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert history["prompt"][1] == prompt_id and history["prompt"][3] == {"client_id": cid}
    assert history["meta"]["4"]["real_node_id"] == "4"
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (512, 512) and img.mode == "RGB"
        assert img.getpixel((256, 256)) == (204, 102, 0)  # #3399FF blurred, then inverted
        assert "prompt" in img.text  # the workflow, as ComfyUI stores it


async def test_history_stays_empty_until_the_final_executing(start: Callable[..., Box]) -> None:
    box = start(history_delay_s=30)  # 0.3 s wall between execution_success and the history write
    async with feed(box.url) as (cid, ws, _), box.http() as http:
        prompt_id = await submit(http, blur_graph(), cid)
        await wait_for(ws, "execution_success")
        early = (await http.get(f"/history/{prompt_id}")).json()
        await collect(ws, prompt_id)
        late = (await http.get(f"/history/{prompt_id}")).json()
    assert early == {}
    assert late[prompt_id]["status"]["completed"]


async def test_identical_prompt_is_cached_and_costs_nothing(box: Box) -> None:
    graph = blur_graph(0x445566)
    first_id, first = await run(box, graph)
    second_id, messages = await run(box, graph)
    saved = next(m for m in first if isinstance(m, dict) and m["type"] == "executed")["data"]["output"]
    filename = saved["images"][0]["filename"]
    counter = int(filename.removeprefix("empty_blur_").removesuffix("_.png"))
    async with box.http() as http:
        second = (await http.get(f"/history/{second_id}")).json()[second_id]
        no_new_file = await http.get(
            "/view", params={"filename": f"empty_blur_{counter + 1:05}_.png", "subfolder": "imagefunnel"}
        )

    cached = next(m for m in messages if isinstance(m, dict) and m["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1", "2", "3", "4"]
    assert "executing" not in types(messages)[:-1]  # nothing ran; only the closing executing(null)
    executed = next(m for m in messages if isinstance(m, dict) and m["type"] == "executed")
    assert executed["data"]["output"] == saved  # the old file name
    assert second["outputs"]["4"] == saved
    assert no_new_file.status_code == 404
    billed = {record.prompt_id: record for record in box.server.billing()}
    assert billed[first_id].usd > 0 and billed[first_id].executed_nodes == ("1", "2", "3", "4")
    assert billed[second_id].usd == 0 and billed[second_id].cached_nodes == ("1", "2", "3", "4")
    changed_id, _ = await run(box, blur_graph(0x102030))
    assert billed[first_id].usd > 0 and box.server.billing()[-1].prompt_id == changed_id
    assert box.server.billing()[-1].usd > 0


# -- validation ---------------------------------------------------------------------------------
def _mutate(graph: dict[str, Any], node: str, **inputs: Any) -> dict[str, Any]:
    graph = copy.deepcopy(graph)
    graph[node]["inputs"].update(inputs)
    return graph


def _without(graph: dict[str, Any], node: str, key: str | None = None) -> dict[str, Any]:
    graph = copy.deepcopy(graph)
    if key is None:
        del graph[node]
    else:
        del graph[node]["inputs"][key]
    return graph


@pytest.mark.parametrize(
    ("graph", "error_type", "node", "reason", "details"),
    [
        ({**blur_graph(), "2": {"class_type": "NoSuchNode", "inputs": {}}}, "invalid_prompt", None, None,
         "Node ID '#2'"),
        (_without(blur_graph(), "1", "width"), "prompt_outputs_failed_validation", "1", "required_input_missing",
         "width"),
        (_mutate(blur_graph(), "1", width="wide"), "prompt_outputs_failed_validation", "1", "invalid_input_type",
         "width, wide, invalid literal for int() with base 10: 'wide'"),
        (_mutate(blur_graph(), "1", width=99999), "prompt_outputs_failed_validation", "1", "value_bigger_than_max",
         "width"),
        (_mutate(blur_graph(), "1", height=0), "prompt_outputs_failed_validation", "1", "value_smaller_than_min",
         "height"),
        (_mutate(blur_graph(), "3", image=["99", 0]), "prompt_outputs_failed_validation", "3",
         "exception_during_inner_validation", "'99'"),
        (_without(blur_graph(), "4"), "prompt_no_outputs", None, None, ""),
    ],
)  # fmt: skip
async def test_validation_errors_have_the_recorded_shape(
    box: Box,
    graph: dict[str, Any],
    error_type: str,
    node: str | None,
    reason: str | None,
    details: str,
) -> None:
    async with box.http() as http:
        response = await http.post("/prompt", json={"prompt": graph, "client_id": "c"})
        queue = (await http.get("/queue")).json()
    assert response.status_code == 400
    body = response.json()
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    assert body["error"]["type"] == error_type
    if node is None:
        assert body["node_errors"] == {}
        assert body["error"]["details"] == details
        return
    entry = body["node_errors"][node]
    assert entry["dependent_outputs"] == ["4"]
    assert entry["class_type"] == graph[node]["class_type"]
    [error] = entry["errors"]
    assert error["type"] == reason and error["details"] == details
    assert queue == {"queue_running": [], "queue_pending": []}


async def test_validation_messages_match_the_record(box: Box) -> None:
    async with box.http() as http:
        unknown = await http.post(
            "/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}
        )
        big = await http.post("/prompt", json={"prompt": _mutate(blur_graph(), "1", width=99999)})
        missing = await http.post("/prompt", json={"prompt": _without(blur_graph(), "1", "width")})
        link = await http.post("/prompt", json={"prompt": _mutate(blur_graph(), "3", image=["99", 0])})
        no_prompt = await http.post("/prompt", json={"client_id": "c"})
        not_json = await http.post("/prompt", content=b"{nope")
        not_list = await http.post("/prompt", json=[1, 2])
        bad_prompt = await http.post("/prompt", json={"prompt": "not nodes"})
    assert unknown.json()["error"]["message"] == "Cannot execute because node NoSuchNode does not exist."
    assert big.json()["node_errors"]["1"]["errors"][0]["message"] == "Value 99999 bigger than max of 16384"
    assert missing.json()["node_errors"]["1"]["errors"][0] == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "width",
        "extra_info": {"input_name": "width"},
    }
    extra = link.json()["node_errors"]["3"]["errors"][0]["extra_info"]
    assert extra["exception_type"] == "KeyError" and extra["linked_node"] == ["3", 0] and extra["traceback"]
    assert no_prompt.status_code == 400
    assert no_prompt.json()["error"] == {
        "type": "no_prompt",
        "message": "No prompt provided",
        "details": "No prompt provided",
        "extra_info": {},
    }
    # Malformed bodies are a 400 with the validation-error shape, never a 500.
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_prompt"
    assert not_list.status_code == 400 and not_list.json()["node_errors"] == {}
    assert bad_prompt.status_code == 400 and "prompt" in bad_prompt.json()["error"]["message"]


# -- upload, LoadImage, runtime error -------------------------------------------------------------
def _png(width: int, height: int, value: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (value, 40, 200)).save(buf, format="PNG")
    return buf.getvalue()


async def _upload(http: httpx.AsyncClient, data: bytes, name: str, **form: str) -> dict[str, Any]:
    response = await http.post("/upload/image", files={"image": (name, data, "image/png")}, data=form)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_upload_names_follow_comfyui(box: Box) -> None:
    async with box.http() as http:
        first = await _upload(http, _png(64, 48), "probe_upload.png")
        same = await _upload(http, _png(64, 48), "probe_upload.png")
        other = await _upload(http, _png(64, 48, value=10), "probe_upload.png")
        replaced = await _upload(http, _png(8, 8), "probe_upload.png", overwrite="true")
        sub = await _upload(http, _png(8, 8), "x.png", subfolder="refs")
        no_file = await http.post("/upload/image", data={"type": "input"})
        info = (await http.get("/object_info/LoadImage")).json()
    assert first == {"name": "probe_upload.png", "subfolder": "", "type": "input"}
    assert same["name"] == "probe_upload.png"  # the same bytes: no copy
    assert other["name"] == "probe_upload (1).png"
    assert replaced["name"] == "probe_upload.png"
    assert sub == {"name": "x.png", "subfolder": "refs", "type": "input"}
    assert no_file.status_code == 400
    choices = info["LoadImage"]["input"]["required"]["image"][0]
    assert {"probe_upload.png", "probe_upload (1).png", "refs/x.png"} <= set(choices)


async def test_uploaded_image_feeds_load_image(box: Box) -> None:
    async with box.http() as http:
        uploaded = await _upload(http, _png(640, 480), "photo.png", subfolder="refs")
    graph = load_workflow("load_scale_save").graph
    graph["1"]["inputs"]["image"] = f"{uploaded['subfolder']}/{uploaded['name']}"
    _, messages = await run(box, graph)
    executed = next(m for m in messages if isinstance(m, dict) and m["type"] == "executed")
    async with box.http() as http:
        data = (await http.get("/view", params=executed["data"]["output"]["images"][0])).content
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (256, 192)
        assert img.getpixel((128, 96)) == (90, 40, 200)
    assert "execution_success" in types(messages)


async def test_missing_upload_fails_validation(box: Box) -> None:
    graph = load_workflow("load_scale_save").graph
    graph["1"]["inputs"]["image"] = "does_not_exist.png"
    async with box.http() as http:
        body = (await http.post("/prompt", json={"prompt": graph})).json()
    [error] = body["node_errors"]["1"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert error["details"] == "image - Invalid image file: does_not_exist.png"


async def test_truncated_png_loads_partly_black(box: Box) -> None:
    photo = np.random.default_rng(1).integers(60, 255, (120, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]  # uploads fine; the pixels are cut short
    async with box.http() as http:
        await _upload(http, truncated, "truncated.png")
    graph = load_workflow("load_scale_save").graph
    graph["1"]["inputs"]["image"] = "truncated.png"
    graph["2"]["inputs"].update(width=160, height=120)
    prompt_id, messages = await run(box, graph)
    async with box.http() as http:
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = history["outputs"]["3"]["images"][0]
        data = (await http.get("/view", params=image)).content
    assert history["status"]["status_str"] == "success" and "execution_error" not in types(messages)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert pixels[:20].min() >= 50  # the rows that were read are the photo
    assert (pixels[-20:] == 0).all()  # what was never read is black, as ComfyUI leaves it


async def test_corrupt_upload_fails_at_runtime_with_execution_error(box: Box) -> None:
    corrupt = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # a PNG signature, then no image
    async with box.http() as http:
        await _upload(http, corrupt, "corrupt.png")
    graph = load_workflow("load_scale_save").graph
    graph["1"]["inputs"]["image"] = "corrupt.png"
    prompt_id, messages = await run(box, graph)
    async with box.http() as http:
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]

    assert types(messages) == [
        "status", "status", "execution_start", "execution_cached", "progress_state", "executing",
        "execution_error", "status", "executing",
    ]  # fmt: skip
    error = next(m for m in messages if isinstance(m, dict) and m["type"] == "execution_error")["data"]
    assert error["node_id"] == "1" and error["node_type"] == "LoadImage" and error["executed"] == []
    assert error["exception_type"] in {"OSError", "PIL.UnidentifiedImageError", "SyntaxError"}
    assert error["exception_message"].endswith("\n")
    assert {"traceback", "current_inputs", "timestamp"} <= set(error)
    assert isinstance(error["current_outputs"], list)  # node ids, as ComfyUI reports them
    assert history["status"]["status_str"] == "error" and not history["status"]["completed"]
    assert history["status"]["messages"][-1][0] == "execution_error"
    assert history["outputs"] == {}
    assert box.server.billing()[-1].outcome == "error"


# -- interrupt and queue ------------------------------------------------------------------------
async def test_interrupt_stops_the_running_prompt_only(start: Callable[..., Box]) -> None:
    box = start(hang_rate=1.0)
    async with feed(box.url) as (cid, ws, _), box.http() as http:
        running_id = await submit(http, txt2img_graph(), cid)
        pending_id = await submit(http, txt2img_graph(seed=6), cid)
        await wait_for(ws, "executing", node="3")  # the sampler is running (and will hang)
        queue = (await http.get("/queue")).json()
        await http.post("/interrupt", json={"prompt_id": pending_id})  # not running: ignored
        await http.post("/queue", json={"delete": [pending_id]})
        after_delete = (await http.get("/queue")).json()
        interrupted = await http.post("/interrupt", json={"prompt_id": running_id})
        messages = await collect(ws, running_id)
        history = (await http.get(f"/history/{running_id}")).json()[running_id]
        never_ran = (await http.get(f"/history/{pending_id}")).json()

    assert [item[1] for item in queue["queue_running"]] == [running_id]
    assert [item[1] for item in queue["queue_pending"]] == [pending_id]
    assert after_delete["queue_pending"] == [] and len(after_delete["queue_running"]) == 1
    assert interrupted.status_code == 200 and interrupted.content == b""
    assert types(messages)[-3:] == ["execution_interrupted", "status", "executing"]
    data = next(m for m in messages if isinstance(m, dict) and m["type"] == "execution_interrupted")["data"]
    assert data["node_id"] == "3" and data["node_type"] == "KSampler"
    assert set(data["executed"]) == {"4", "5", "6", "7"} and "timestamp" in data
    assert history["status"] == {
        "status_str": "error",
        "completed": False,
        "messages": history["status"]["messages"],
    }
    assert history["status"]["messages"][-1][0] == "execution_interrupted"
    assert never_ran == {}
    [record] = box.server.billing()
    assert record.outcome == "interrupted" and record.gpu_seconds > 0 and record.usd > 0


async def test_prompt_events_go_to_their_client_only(box: Box) -> None:
    async with feed(box.url) as (_, other, _), feed(box.url) as (cid, ws, _):
        async with box.http() as http:
            prompt_id = await submit(http, blur_graph(0x010203), cid)
        await collect(ws, prompt_id)
        seen: list[str] = []
        with pytest.raises(TimeoutError):
            while True:
                seen.append(json.loads(await asyncio.wait_for(other.recv(), 0.2))["type"])
    assert seen and set(seen) == {"status", "progress_state"}  # the broadcasts, nothing else


async def test_a_prompt_without_client_id_sends_only_broadcasts(box: Box) -> None:
    async with feed(box.url) as (_, watcher, _), box.http() as http:
        prompt_id = await submit(http, blur_graph(0x0A0B0C))  # no client_id: nobody owns it
        seen: list[str] = []
        with pytest.raises(TimeoutError):
            while True:
                seen.append(json.loads(await asyncio.wait_for(watcher.recv(), 0.5))["type"])
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert set(seen) == {"status", "progress_state"} and "progress_state" in seen
    assert history["status"]["status_str"] == "success"  # it ran; its events went to nobody


async def test_introspection_routes_and_feature_flags(box: Box) -> None:
    async with box.http() as http:
        features = (await http.get("/features")).json()
        folders = (await http.get("/models")).json()
        checkpoints = (await http.get("/models/checkpoints")).json()
        unknown = await http.get("/models/no_such_folder")
        embeddings = (await http.get("/api/embeddings")).json()
        extensions = (await http.get("/extensions")).json()
        free = await http.post("/free", json={"unload_models": True, "free_memory": True})
    assert features["supports_preview_metadata"] is True and features["max_upload_size"] > 0
    assert "checkpoints" in folders and "loras" in folders
    assert checkpoints == list(box.server.box.checkpoints) and unknown.status_code == 404
    assert embeddings == [] and extensions == [] and free.status_code == 200
    async with feed(box.url) as (_, ws, _):
        await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply == {"type": "feature_flags", "data": features}


async def test_sampler_sends_progress_and_binary_previews(start: Callable[..., Box]) -> None:
    box = start(previews=True)
    prompt_id, messages = await run(box, txt2img_graph(steps=3))
    progress = [m["data"] for m in messages if isinstance(m, dict) and m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
    frames = [m for m in messages if isinstance(m, bytes)]
    assert len(frames) == 3
    assert struct.unpack(">II", frames[0][:8]) == (1, 1) and frames[0][8:11] == b"\xff\xd8\xff"
    truth = box.server.truth(prompt_id)
    assert (truth.width, truth.height, truth.seed, truth.provider) == (256, 256, 5, box.server.box.name)


# -- faults, introspection, money ---------------------------------------------------------------
async def test_outage_answers_503_and_refuses_websockets(start: Callable[..., Box]) -> None:
    box = start(outages=[{"start_s": 0, "end_s": 1e9}])
    async with box.http() as http:
        assert (await http.get("/system_stats")).status_code == 503
        assert (await http.post("/prompt", json={"prompt": blur_graph()})).status_code == 503
    with pytest.raises(InvalidStatus) as info:
        async with feed(box.url):
            pass
    assert info.value.response.status_code == 503


async def test_introspection_routes(start: Callable[..., Box]) -> None:
    box = start(missing_nodes=["ImageBlur"])
    async with box.http() as http:
        stats = (await http.get("/api/system_stats")).json()
        everything = (await http.get("/object_info")).json()
        one = (await http.get("/object_info/EmptyImage")).json()
        absent = (await http.get("/object_info/ImageBlur")).json()
        queue_info = (await http.get("/prompt")).json()
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert stats["devices"][0]["type"] == "cuda" and stats["devices"][0]["vram_total"] > 0
    assert "ImageBlur" not in everything and "KSampler" in everything
    assert list(one) == ["EmptyImage"]
    width = one["EmptyImage"]["input"]["required"]["width"]
    assert width == ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]
    assert one["EmptyImage"]["output"] == ["IMAGE"] and not one["EmptyImage"]["output_node"]
    assert everything["SaveImage"]["output_node"] is True
    assert absent == {}
    assert queue_info == {"exec_info": {"queue_remaining": 0}}


async def test_history_lists_the_latest_prompts(box: Box) -> None:
    first, _ = await run(box, blur_graph(0x111111))
    second, _ = await run(box, blur_graph(0x222222))
    async with box.http() as http:
        latest = (await http.get("/history", params={"max_items": 1})).json()
        everything = (await http.get("/history")).json()
        await http.post("/history", json={"delete": [first]})
        remaining = (await http.get("/history")).json()
    assert list(latest) == [second]
    assert list(everything)[-2:] == [first, second]
    assert first not in remaining and list(remaining)[-1] == second


async def test_defects_and_garbage_are_in_the_truth(start: Callable[..., Box]) -> None:
    defective = start(defect_rate=1.0, defect_mix={"noise": 1.0})
    junk = start(garbage_rate=1.0)
    noisy_id, _ = await run(defective, txt2img_graph())
    junk_id, messages = await run(junk, txt2img_graph())
    assert (
        defective.server.truth(noisy_id).defect is Defect.NOISE
        and not defective.server.truth(noisy_id).garbage
    )
    truth = junk.server.truth(junk_id)
    assert truth.garbage and truth.defect in {Defect.BLACK, Defect.TRUNCATED}
    assert "execution_success" in types(messages)  # garbage is still a success, and billed
    assert junk.server.billing()[-1].usd > 0
    blur_id, _ = await run(defective, blur_graph())
    with pytest.raises(KeyError):
        defective.server.truth(blur_id)  # no market picture in a model-free prompt


async def test_dropped_websocket_still_finishes_in_history(start: Callable[..., Box]) -> None:
    box = start(ws_drop_rate=1.0)
    async with feed(box.url) as (cid, ws, _), box.http() as http:
        prompt_id = await submit(http, blur_graph(0x333333), cid)
        with pytest.raises(Exception, match="1011"):
            await collect(ws, prompt_id)
        for _ in range(200):
            entry = (await http.get(f"/history/{prompt_id}")).json()
            if entry:
                break
            await asyncio.sleep(0.01)
    assert entry[prompt_id]["status"]["status_str"] == "success"


async def test_billing_follows_the_spot_price_per_box(start: Callable[..., Box]) -> None:
    spot = start(usd_per_hour=2.0, price_schedule=[{"after_s": 1000, "usd_per_hour": 0.5}])
    steady = start(usd_per_hour=3.0)
    await run(spot, txt2img_graph(seed=1))
    spot.server.advance(1000)
    await run(spot, txt2img_graph(seed=2))
    await run(steady, txt2img_graph(seed=3))
    before, after = spot.server.billing()
    assert (before.usd_per_hour, after.usd_per_hour) == (2.0, 0.5)
    assert after.usd == pytest.approx(after.gpu_seconds * 0.5 / 3600)
    # The second prompt reuses the loaded checkpoint and the text encoding: only the rest runs.
    assert set(after.cached_nodes) == {"4", "5", "6", "7"} and after.gpu_seconds < before.gpu_seconds
    assert [record.box for record in steady.server.billing()] == [steady.server.box.name]
    assert spot.server.usd_per_hour() == 0.5


@pytest.mark.parametrize(
    ("box_config", "steps", "node", "landed_s"),
    [
        # Interrupted while the checkpoint loads: the load runs to its end (50 s), then it stops.
        ({"load_s": 50.0, "node_s": 0.0, "seconds_per_step": 1.0}, 4, "4", 50.0),
        # Interrupted during the first sampler step: that step finishes (load 0 + one 30 s step).
        ({"load_s": 0.0, "node_s": 0.0, "seconds_per_step": 30.0}, 4, "3", 30.0),
    ],
)
async def test_interrupt_lands_when_the_running_node_or_step_finishes(
    start: Callable[..., Box], box_config: dict[str, Any], steps: int, node: str, landed_s: float
) -> None:
    box = start(**box_config)
    async with feed(box.url) as (cid, ws, _), box.http() as http:
        prompt_id = await submit(http, txt2img_graph(steps=steps), cid)
        await wait_for(ws, "executing", node=node)
        await http.post("/interrupt", json={"prompt_id": prompt_id})
        messages = await collect(ws, prompt_id)
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]

    stopped = next(m for m in messages if isinstance(m, dict) and m["type"] == "execution_interrupted")
    assert stopped["data"]["node_id"] == node
    # The server's own timestamps show the time until the interrupt landed, and the bill is that time.
    recorded = dict(history["status"]["messages"])
    assert recorded["execution_interrupted"] == stopped["data"]
    server_s = (stopped["data"]["timestamp"] - recorded["execution_start"]["timestamp"]) / 1000
    [record] = box.server.billing()
    assert record.outcome == "interrupted"
    assert server_s == record.gpu_seconds == pytest.approx(landed_s)
