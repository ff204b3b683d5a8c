"""The box's prompt worker: executes queued prompts one at a time and reports as ComfyUI does.

Interrupts land only at the next sampler step or node boundary (ComfyUI checks between nodes and in
the sampler's per-step callback): a node that has started runs to its end, and the prompt is billed
until then. A hung sampler stops advancing but polls for an interrupt, so one lands at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import struct
import time
from collections.abc import Mapping
from typing import Any, Literal

import cv2
import numpy as np

from imagefunnel.market.comfyui_box import GpuBillingRecord
from imagefunnel.market.comfyui_catalog import NodeSpec
from imagefunnel.market.comfyui_nodes import NodeFailure, prompt_text, run_node
from imagefunnel.market.comfyui_runtime import BoxRuntime, CachedOutputs, QueueItem, Run
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import Truth, plan_image, plan_product_image, render
from imagefunnel.market.products import product_ask, reference_color

__all__ = ["execute", "serve"]

_PREVIEW_IMAGE = 1  # BinaryEventTypes.PREVIEW_IMAGE
_PREVIEW_JPEG = 1  # image type inside a preview frame: 1 JPEG, 2 PNG
_OOM = (
    "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
    "1.06 GiB is free."
)
_Outcome = Literal["success", "error", "interrupted"]


class _Interrupted(Exception):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


class _Failed(Exception):
    def __init__(self, node_id: str, failure: NodeFailure, inputs: Mapping[str, Any]) -> None:
        super().__init__(failure.message)
        self.node_id = node_id
        self.failure = failure
        self.inputs = inputs


async def serve(rt: BoxRuntime) -> None:
    """Run forever (until cancelled with the server)."""
    while True:
        await execute(rt, await rt.next_item())


async def execute(rt: BoxRuntime, item: QueueItem) -> None:
    rt.interrupted.clear()  # a stray interrupt while idle must not hit the next prompt
    run = Run(item=item, faults=rt.faults(item), start_s=rt.clock.now_s())
    pid = item.prompt_id
    await rt.emit(run, "execution_start", {"prompt_id": pid, "timestamp": rt.timestamp(run)}, record=True)
    if run.faults.drop_websocket:
        await rt.drop(item.client_id)
    order, signatures = _plan(rt, item)
    run.cached = [node_id for node_id in order if signatures[node_id] in rt.cache]
    cached = {"nodes": run.cached, "prompt_id": pid, "timestamp": rt.timestamp(run)}
    await rt.emit(run, "execution_cached", cached, record=True)
    outcome, event, data = await _run_nodes(rt, run, order, signatures)
    await rt.emit(run, event, data, record=True)
    delay = rt.box.history_delay_s * rt.clock.time_factor
    if delay > 0:
        await asyncio.sleep(delay)  # the window in which /history/{id} still answers {}
    _finish(rt, run, outcome, signatures)
    rt.running = None
    rt.last_node = None
    await rt.broadcast_status()
    if item.client_id is not None:  # an owner-less prompt ends without its closing executing
        await rt.send("executing", {"node": None, "prompt_id": pid}, item.client_id)


def _plan(rt: BoxRuntime, item: QueueItem) -> tuple[list[str], dict[str, str]]:
    """Execution order (dependencies first, from each output) and each node's cache signature."""
    prompt = item.prompt
    order: list[str] = []
    signatures: dict[str, str] = {}

    def visit(node_id: str) -> None:
        if node_id in signatures:
            return
        node = prompt[node_id]
        parts: dict[str, Any] = {}
        for name, value in sorted(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                visit(value[0])
                parts[name] = ["link", signatures[value[0]], value[1]]
            else:
                parts[name] = value
        if node["class_type"] == "LoadImage":  # like LoadImage.IS_CHANGED: the file's content counts
            data = rt.store.input_file(str(node["inputs"].get("image"))) or b""
            parts["__content__"] = hashlib.sha256(data).hexdigest()
        blob = json.dumps([node["class_type"], parts], sort_keys=True, default=str)
        signatures[node_id] = hashlib.sha256(blob.encode()).hexdigest()
        order.append(node_id)

    for output in item.outputs:
        visit(output)
    return order, signatures


async def _run_nodes(
    rt: BoxRuntime, run: Run, order: list[str], signatures: Mapping[str, str]
) -> tuple[_Outcome, str, dict[str, Any]]:
    pid = run.item.prompt_id
    catalog = rt.catalog()
    values: dict[str, tuple[Any, ...]] = {}
    try:
        for node_id in order:
            await _run_node(rt, run, node_id, catalog, signatures[node_id], values)
    except _Interrupted as stop:
        data = _failure_base(run, stop.node_id) | {"timestamp": rt.timestamp(run)}
        return "interrupted", "execution_interrupted", data
    except _Failed as failed:
        data = _failure_base(run, failed.node_id) | {
            "exception_message": f"{failed.failure.message}\n",
            "exception_type": failed.failure.exception_type,
            "traceback": [
                f'  File "/opt/ComfyUI/execution.py", line 496, in execute\n    {failed.failure.message}\n'
            ],
            "current_inputs": {name: [_format(value)] for name, value in failed.inputs.items()},
            # The ids of the nodes whose outputs are cached (a list, as ComfyUI reports it).
            "current_outputs": [*run.cached, *run.executed],
            "timestamp": rt.timestamp(run),
        }
        return "error", "execution_error", data
    return "success", "execution_success", {"prompt_id": pid, "timestamp": rt.timestamp(run)}


def _failure_base(run: Run, node_id: str) -> dict[str, Any]:
    return {
        "prompt_id": run.item.prompt_id,
        "node_id": node_id,
        "node_type": run.item.prompt[node_id]["class_type"],
        "executed": list(run.executed),
    }


async def _run_node(
    rt: BoxRuntime,
    run: Run,
    node_id: str,
    catalog: Mapping[str, NodeSpec],
    signature: str,
    values: dict[str, tuple[Any, ...]],
) -> None:
    pid = run.item.prompt_id
    node = run.item.prompt[node_id]
    class_type = str(node["class_type"])
    if node_id in run.cached:
        hit = rt.cache[signature]
        values[node_id] = hit.values
        if hit.ui is not None:
            run.ui[node_id] = hit.ui
            # The old file names, no new file.
            executed = {"node": node_id, "display_node": node_id, "output": hit.ui, "prompt_id": pid}
            await rt.emit(run, "executed", executed)
        run.started.append(node_id)
        await rt.progress(_progress(run, running=None))  # a cached node is finished at once
        return
    if rt.interrupted.is_set():
        raise _Interrupted(node_id)
    run.started.append(node_id)
    rt.last_node = node_id
    await rt.progress(_progress(run, running=node_id))  # start_progress: the first of two per node
    await rt.emit(run, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
    spec = catalog[class_type]
    # Only declared inputs reach a node (ComfyUI's get_input_data ignores the rest).
    given = {name: node["inputs"][name] for name in spec.required if name in node["inputs"]}
    inputs = {
        name: values[value[0]][value[1]] if isinstance(value, list) else value
        for name, value in given.items()
    }
    await _spend(rt, run, node_id, spec, inputs)
    context = _Context(rt, run)
    loop = asyncio.get_running_loop()
    try:
        outputs, ui = await loop.run_in_executor(rt.executor, run_node, class_type, inputs, context)
    except NodeFailure as failure:
        raise _Failed(node_id, failure, inputs) from failure
    values[node_id] = outputs
    rt.cache[signature] = CachedOutputs(outputs, ui)
    run.executed.append(node_id)
    if ui is not None:
        run.ui[node_id] = ui
        await rt.emit(
            run, "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": pid}
        )
    await rt.progress(_progress(run, running=None))  # finish_progress


async def _spend(rt: BoxRuntime, run: Run, node_id: str, spec: NodeSpec, inputs: Mapping[str, Any]) -> None:
    """Let the node's modelled GPU time pass (with progress, previews and faults for samplers)."""
    if spec.kind != "sampler":
        await _wait(rt, run, node_id, rt.box.load_s if spec.kind == "loader" else rt.box.node_s)
        return
    steps = int(inputs["steps"])
    faults = run.faults
    error_step = max(1, math.ceil(faults.error_at * steps)) if faults.error_at is not None else None
    hang_step = max(1, math.ceil(faults.hang_at * steps)) if faults.hang_at is not None else None
    for step in range(1, steps + 1):
        if step == hang_step:
            await _hang(rt, run, node_id)
        await _wait(rt, run, node_id, rt.box.seconds_per_step)
        if step == error_step:
            raise _Failed(node_id, NodeFailure("torch.OutOfMemoryError", _OOM), inputs)
        progress = {"value": step, "max": steps, "prompt_id": run.item.prompt_id, "node": node_id}
        await rt.emit(run, "progress", progress)
        if rt.box.previews:
            await rt.send_preview(_preview_frame(), run.item.client_id)


async def _wait(rt: BoxRuntime, run: Run, node_id: str, seconds: float) -> None:
    """One unit of GPU work (a node, or one sampler step) runs to its end, interrupted or not:
    ComfyUI checks for an interrupt only between nodes and in the sampler's per-step callback, so
    an interrupt lands (and the GPU time it costs ends) when the running unit finishes."""
    if rt.interrupted.is_set():
        raise _Interrupted(node_id)
    await asyncio.sleep(seconds * rt.clock.time_factor if seconds > 0 else 0)
    run.elapsed_s += seconds
    if rt.interrupted.is_set():
        raise _Interrupted(node_id)


async def _hang(rt: BoxRuntime, run: Run, node_id: str) -> None:
    began = time.monotonic()
    await rt.interrupted.wait()  # the GPU stays busy (and billed) until someone interrupts
    run.elapsed_s += (time.monotonic() - began) / rt.clock.time_factor
    raise _Interrupted(node_id)


def _finish(rt: BoxRuntime, run: Run, outcome: _Outcome, signatures: Mapping[str, str]) -> None:
    item = run.item
    status = {"status_str": "success" if outcome == "success" else "error", "completed": outcome == "success"}
    meta = {
        node_id: {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
        for node_id in run.ui
    }
    entry = {
        "prompt": item.wire(),
        "outputs": run.ui,
        "status": status | {"messages": run.messages},
        "meta": meta,
    }
    rt.store.add_history(item.prompt_id, entry, run.ui)
    gpu_seconds = (rt.timestamp(run) - rt.clock.ms(run.start_s)) / 1000
    price = rt.box.price_at(run.start_s)
    record = GpuBillingRecord(
        box=rt.box.name,
        prompt_id=item.prompt_id,
        started_s=run.start_s,
        gpu_seconds=gpu_seconds,
        usd_per_hour=price,
        usd=gpu_seconds * price / 3600,
        outcome=outcome,
        executed_nodes=tuple(run.executed),
        cached_nodes=tuple(run.cached),
    )
    rt.store.add_billing(record)
    # Classic cache: keep only what the latest prompt used.
    used = set(signatures.values())
    rt.cache = {key: value for key, value in rt.cache.items() if key in used}


def _progress(run: Run, *, running: str | None) -> dict[str, Any]:
    pid = run.item.prompt_id
    nodes = {}
    for node_id in run.started:
        done = node_id != running
        nodes[node_id] = {
            "value": 1.0 if done else 0.0,
            "max": 1.0,
            "state": "finished" if done else "running",
            "node_id": node_id,
            "prompt_id": pid,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
    return {"prompt_id": pid, "nodes": nodes}


def _format(value: Any) -> Any:
    return (
        value if value is None or isinstance(value, int | float | bool | str) else f"<{type(value).__name__}>"
    )


def _preview_frame() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 96, dtype=np.uint8))
    return struct.pack(">II", _PREVIEW_IMAGE, _PREVIEW_JPEG) + (buf.tobytes() if ok else b"")


class _Context:
    """``NodeContext`` for one run; called from the executor thread."""

    def __init__(self, rt: BoxRuntime, run: Run) -> None:
        self._rt = rt
        self._run = run
        self.garbage: Defect | None = run.faults.garbage

    def input_file(self, name: str) -> bytes | None:
        return self._rt.store.input_file(name)

    def save_output(self, kind: str, subfolder: str, prefix: str, data: bytes, truth: Truth | None) -> str:
        return self._rt.store.save_output(kind, subfolder, prefix, data, truth)

    def plan(self, *, ckpt: str, text: str, width: int, height: int, seed: int) -> Truth:
        box = self._rt.box
        subject = self._subject()
        ask = product_ask(text) if subject is None else None
        if ask is not None:
            color = reference_color(self._loaded_images())
            ask = ask if color is None else dataclasses.replace(ask, color=color)
            parts = (box.seed, box.name, ckpt, text, width, height, seed, *ask.color)
            truth = plan_product_image(
                provider=box.name,
                ask=ask,
                width=width,
                height=height,
                seed=seed,
                image_format="png",
                defect_rate=box.defect_rate,
                defect_mix=box.product_defect_mix,
                rng=derive_rng("product", *parts),
            )
            return self._garbage_of(truth)
        extra = () if subject is None else (subject,)  # prompts without a reference draw as before
        rng = derive_rng("image", box.seed, box.name, ckpt, text, width, height, seed, *extra)
        truth = plan_image(
            provider=box.name,
            library=self._rt.library,
            width=width,
            height=height,
            seed=seed,
            image_format="png",
            defect_rate=box.defect_rate,
            defect_mix=box.defect_mix,
            rng=rng,
            subject=subject,
            identity_drift_rate=box.identity_drift_rate,
        )
        return self._garbage_of(truth)

    def _garbage_of(self, truth: Truth) -> Truth:
        if self.garbage is None:
            return truth
        strength = float(derive_rng("garbage", self._rt.box.seed, self._run.item.number).uniform(0.5, 1.0))
        return dataclasses.replace(truth, defect=self.garbage, strength=strength, garbage=True)

    def _loaded_images(self) -> list[bytes]:
        """The files the prompt's LoadImage nodes load (an img2img reference), in node order."""
        nodes = self._run.item.prompt.values()
        names = [node["inputs"].get("image") for node in nodes if node["class_type"] == "LoadImage"]
        files = [self._rt.store.input_file(name) for name in names if isinstance(name, str)]
        return [data for data in files if data is not None]

    def _subject(self) -> str | None:
        """The person the prompt's loaded images (an img2img reference) show, if the market knows them."""
        files = self._loaded_images()
        return self._rt.library.subject(files) if files else None

    def render(self, truth: Truth) -> bytes:
        return render(truth, self._rt.library)

    def png_text(self) -> Mapping[str, str]:
        return prompt_text(self._run.item.prompt)
