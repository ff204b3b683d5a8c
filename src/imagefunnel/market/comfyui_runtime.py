"""The running box: a prompt queue, one worker executing prompts one at a time, and the websocket feed.

Message order follows what a real ComfyUI 0.3.64 sent::

    status (queued) · status (picked up) · execution_start · execution_cached ·
    (progress_state · executing · [progress × steps] · [executed] · progress_state) per node ·
    execution_success | execution_error | execution_interrupted ·
    -- history written here, never earlier -- · status · executing {node: null}

Prompt-specific messages go to the prompt's ``client_id`` only (to nobody when it has none); ``status``
and ``progress_state`` go to everyone. Node outputs are cached by input signature, as ComfyUI's classic cache keeps the
last prompt's outputs: a resubmitted identical prompt re-executes nothing and costs no GPU time.

GPU time is *modelled*: each node adds its configured seconds to the prompt's clock, and message
timestamps are the box's scenario clock, so ``timestamp(terminal) - timestamp(start)`` is exactly
what the billing log charges, however the host machine's scheduler jitters.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.websockets import WebSocketDisconnect

from imagefunnel.market.comfyui_box import ComfyUIBox
from imagefunnel.market.comfyui_catalog import NodeSpec, node_catalog
from imagefunnel.market.comfyui_store import BoxStore
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import AssetLibrary

__all__ = ["BoxClock", "BoxRuntime", "CachedOutputs", "Faults", "QueueItem", "Run", "Sink"]


class Sink(Protocol):
    """A connected websocket (Starlette's ``WebSocket`` fits)."""

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return str(value) if value is not None else None

    def wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong with one prompt (drawn from the box seed and the prompt's number)."""

    error_at: float | None = None  # fraction of the sampler's steps after which it raises
    hang_at: float | None = None  # fraction of the sampler's steps after which it stalls
    garbage: Defect | None = None
    drop_websocket: bool = False


class BoxClock:
    """Scenario seconds (wall seconds / ``time_factor`` + ``advance``s) and epoch-ms timestamps."""

    def __init__(self, time_factor: float) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0")
        self.time_factor = time_factor
        self._t0 = time.monotonic()
        self._epoch0 = time.time()
        self._offset_s = 0.0

    def reset(self) -> None:
        self._t0 = time.monotonic()
        self._epoch0 = time.time()
        self._offset_s = 0.0

    def now_s(self) -> float:
        return (time.monotonic() - self._t0) / self.time_factor + self._offset_s

    def advance(self, seconds: float) -> None:
        self._offset_s += seconds

    def ms(self, t_s: float) -> int:
        return round((self._epoch0 + t_s) * 1000)


@dataclass
class CachedOutputs:
    values: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class Run:
    """One prompt's execution state (owned by the worker)."""

    item: QueueItem
    faults: Faults
    start_s: float
    elapsed_s: float = 0.0
    messages: list[list[Any]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)


class BoxRuntime:
    """Queue, sockets and cache of one box; its coroutines run on the server's event loop."""

    def __init__(
        self, box: ComfyUIBox, *, clock: BoxClock, library: AssetLibrary, executor: Executor | None
    ) -> None:
        self.box = box
        self.clock = clock
        self.library = library
        self.executor = executor
        self.store = BoxStore()
        self.queue: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.last_node: str | None = None
        self.cache: dict[str, CachedOutputs] = {}
        self._sockets: dict[str, Sink] = {}
        self._number = 0
        self.interrupted = asyncio.Event()
        self._wakeup = asyncio.Event()

    # -- catalogue --------------------------------------------------------------------------
    def catalog(self) -> dict[str, NodeSpec]:
        specs = node_catalog(checkpoints=self.box.checkpoints, input_files=self.store.input_names())
        return {name: spec for name, spec in specs.items() if name not in self.box.missing_nodes}

    def next_number(self) -> int:
        number = self._number
        self._number += 1
        return number

    # -- queue ------------------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any]:
        remaining = len(self.queue) + (1 if self.running is not None else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    async def enqueue(self, item: QueueItem) -> None:
        self.queue.append(item)
        self.queue.sort(key=lambda queued: queued.number)
        await self.broadcast_status()
        self._wakeup.set()

    async def delete(self, prompt_ids: list[str] | None) -> None:
        """Remove pending prompts (all of them for ``None``); a running prompt is not touched."""
        before = len(self.queue)
        wanted = set(prompt_ids) if prompt_ids is not None else None
        self.queue = [item for item in self.queue if wanted is not None and item.prompt_id not in wanted]
        if len(self.queue) != before:
            await self.broadcast_status()

    def interrupt(self, prompt_id: str | None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id``, when one is given)."""
        running = self.running
        if running is None or (prompt_id is not None and running.prompt_id != prompt_id):
            return False
        self.interrupted.set()
        return True

    async def next_item(self) -> QueueItem:
        while not self.queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self.queue.pop(0)
        self.running = item
        await self.broadcast_status()
        return item

    def faults(self, item: QueueItem) -> Faults:
        rng = derive_rng("comfyui-prompt", self.box.seed, self.box.name, item.number)
        error = rng.random() < self.box.error_rate
        hang = rng.random() < self.box.hang_rate
        garbage = rng.random() < self.box.garbage_rate
        kind = Defect.BLACK if rng.random() < 0.5 else Defect.TRUNCATED
        if self.box.garbage_kind is not None:  # drawn all the same: the other draws keep their seeds
            kind = Defect.BLACK if self.box.garbage_kind == "black" else Defect.TRUNCATED
        drop = rng.random() < self.box.ws_drop_rate
        where = float(rng.uniform(0.1, 0.9))
        return Faults(
            error_at=where if error else None,
            hang_at=where if hang and not error else None,
            garbage=kind if garbage else None,
            drop_websocket=drop,
        )

    def resets(self, item: QueueItem) -> bool:
        """Whether the connection that submitted ``item`` is reset before its answer (its own draw:
        adding the fault changes no other prompt's faults)."""
        if self.box.reset_rate <= 0:
            return False
        rng = derive_rng("comfyui-reset", self.box.seed, self.box.name, item.number)
        return bool(rng.random() < self.box.reset_rate)

    # -- websockets -------------------------------------------------------------------------
    def attach(self, sid: str, sink: Sink) -> None:
        self._sockets[sid] = sink  # a reconnect with the same clientId replaces the old socket

    def detach(self, sid: str, sink: Sink) -> None:
        if self._sockets.get(sid) is sink:
            del self._sockets[sid]

    async def drop(self, sid: str | None) -> None:
        """Fault: the connection to ``sid`` goes away (a proxy timeout, a network blip)."""
        sink = self._sockets.pop(sid, None) if sid is not None else None
        if sink is not None:
            await sink.close(code=1011)

    async def send(self, event: str, data: Mapping[str, Any], sid: str | None) -> None:
        text = json.dumps({"type": event, "data": data})
        if sid is None:
            targets = list(self._sockets.values())
        else:
            # A prompt's events go to its owner only; an owner not connected simply misses them.
            targets = [self._sockets[sid]] if sid in self._sockets else []
        for sink in targets:
            await self._deliver(sink, text)

    async def send_preview(self, data: bytes, sid: str | None) -> None:
        sink = self._sockets.get(sid) if sid is not None else None
        if sink is not None:
            await self._deliver(sink, data)

    async def _deliver(self, sink: Sink, payload: str | bytes) -> None:
        try:
            if isinstance(payload, str):
                await sink.send_text(payload)
            else:
                await sink.send_bytes(payload)
        except (RuntimeError, OSError, WebSocketDisconnect):
            # The client went away mid-send (Starlette says so with WebSocketDisconnect once the
            # close handshake has begun); the real server logs "send error" and carries on.
            for sid, known in list(self._sockets.items()):
                if known is sink:
                    del self._sockets[sid]

    async def broadcast_status(self) -> None:
        await self.send("status", {"status": self.queue_info()}, None)

    async def emit(self, run: Run, event: str, data: dict[str, Any], *, record: bool = False) -> None:
        """Send a prompt event to its owner; ``record`` also keeps it for the history entry.

        A prompt queued without a ``client_id`` has no owner: its events go to nobody (ComfyUI
        sends them only ``if server.client_id is not None``), though history still records them.
        """
        if record:
            run.messages.append([event, data])
        if run.item.client_id is not None:
            await self.send(event, data, run.item.client_id)

    async def progress(self, data: dict[str, Any]) -> None:
        """``progress_state`` is broadcast to every socket, owner or not (ComfyUI's progress
        handler calls ``send_sync`` without a session id)."""
        await self.send("progress_state", data, None)

    def timestamp(self, run: Run) -> int:
        return self.clock.ms(run.start_s + run.elapsed_s)
