"""ComfyUI's wire records as the adapter reads them: pydantic models of the JSON it answers, the
frozen results built from them, and one-line reasons for what went wrong.

Every shape here was observed on a real ComfyUI 0.3.64 server; fields added
by later versions are ignored, and fields older versions lack have defaults.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

__all__ = [
    "HistoryEntry",
    "Message",
    "NodeOutput",
    "OutputImage",
    "QueuePayload",
    "QueueState",
    "RunResult",
    "Status",
    "Submitted",
    "Tracker",
    "Uploaded",
    "Wire",
    "error_summary",
    "from_history",
    "from_tracker",
    "queue_ids",
    "rejection",
]

Status = Literal["success", "error", "interrupted"]
_TERMINAL: dict[str, Status] = {
    "execution_success": "success",
    "execution_error": "error",
    "execution_interrupted": "interrupted",
}


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireImage(Wire):
    filename: str
    subfolder: str = ""
    type: str = "output"


class NodeOutput(Wire):
    images: list[WireImage] = []


class HistoryStatus(Wire):
    status_str: str = ""
    completed: bool = False
    messages: list[tuple[str, dict[str, Any]]] = []


class HistoryEntry(Wire):
    outputs: dict[str, NodeOutput] = {}
    status: HistoryStatus | None = None


class Submitted(Wire):
    prompt_id: str
    number: float = 0
    node_errors: dict[str, Any] | list[Any] = {}


class QueuePayload(Wire):
    queue_running: list[list[Any]] = []
    queue_pending: list[list[Any]] = []


class Uploaded(Wire):
    name: str
    subfolder: str = ""
    type: str = "input"


class Message(Wire):
    type: str
    data: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class OutputImage:
    filename: str
    subfolder: str
    type: str
    node_id: str


@dataclass(frozen=True, slots=True)
class QueueState:
    running: tuple[str, ...]
    pending: tuple[str, ...]

    @property
    def depth(self) -> int:
        return len(self.running) + len(self.pending)


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a prompt ended, from its history entry (or, failing that, from the websocket)."""

    prompt_id: str
    status: Status
    images: tuple[OutputImage, ...]
    gpu_seconds: float | None  # server timestamps; None when the server sends none
    cached_nodes: tuple[str, ...]
    error: Mapping[str, Any]  # execution_error / execution_interrupted data
    via: Literal["websocket", "polling"]


@dataclass
class Tracker:
    """What the websocket told us about our prompt so far (mutable: owned by one ``generate``)."""

    prompt_id: str | None = None
    running_since: float | None = None  # monotonic time execution_start arrived
    start_ms: int | None = None
    end_ms: int | None = None
    status: Status | None = None
    error: dict[str, Any] = field(default_factory=dict)
    cached: tuple[str, ...] = ()
    images: list[OutputImage] = field(default_factory=list)

    def observe(self, message: Message) -> bool:
        """Take one message about our prompt; ``True`` once it is completely done."""
        data = message.data
        stamp = data.get("timestamp")
        if message.type == "execution_start":
            self.running_since = time.monotonic()
            self.start_ms = stamp if isinstance(stamp, int) else None
        elif message.type == "execution_cached":
            self.cached = tuple(str(node) for node in data.get("nodes") or ())
        elif message.type == "executed":
            output = NodeOutput.model_validate(data.get("output") or {})
            node = str(data.get("node"))
            self.images.extend(OutputImage(i.filename, i.subfolder, i.type, node) for i in output.images)
        elif message.type in _TERMINAL:
            self.status = _TERMINAL[message.type]
            self.end_ms = stamp if isinstance(stamp, int) else None
            self.error = dict(data) if self.status != "success" else {}
        return message.type == "executing" and data.get("node") is None


def from_history(
    prompt_id: str, entry: HistoryEntry, via: Literal["websocket", "polling"], tracker: Tracker
) -> RunResult:
    messages = dict(entry.status.messages) if entry.status is not None else {}
    status: Status | None = next((_TERMINAL[name] for name in _TERMINAL if name in messages), None)
    if status is None:  # servers before status messages: outputs are all there is to go by
        status = "success" if entry.status is None or entry.status.completed else "error"
    terminal = next((messages[name] for name in _TERMINAL if name in messages), {})
    start = messages.get("execution_start", {}).get("timestamp")
    end = terminal.get("timestamp")
    if isinstance(start, int) and isinstance(end, int):
        gpu_seconds: float | None = max(0, end - start) / 1000
    else:
        gpu_seconds = _local_seconds(tracker)
    cached = tuple(str(node) for node in messages.get("execution_cached", {}).get("nodes") or tracker.cached)
    images = tuple(
        OutputImage(image.filename, image.subfolder, image.type, node)
        for node, output in entry.outputs.items()
        for image in output.images
    )
    error = terminal if status != "success" else {}
    return RunResult(prompt_id, status, images, gpu_seconds, cached, error, via)


def from_tracker(prompt_id: str, tracker: Tracker) -> RunResult:
    if tracker.start_ms is not None and tracker.end_ms is not None:
        gpu_seconds: float | None = max(0, tracker.end_ms - tracker.start_ms) / 1000
    else:
        gpu_seconds = _local_seconds(tracker)
    status = tracker.status or "success"
    return RunResult(
        prompt_id, status, tuple(tracker.images), gpu_seconds, tracker.cached, tracker.error, "websocket"
    )


def queue_ids(items: list[list[Any]]) -> tuple[str, ...]:
    # Queue entries are [number, prompt_id, prompt, extra_data, outputs_to_execute].
    return tuple(str(item[1]) for item in items if len(item) > 1)


def _local_seconds(tracker: Tracker) -> float | None:
    if tracker.running_since is None:
        return None
    return time.monotonic() - tracker.running_since


def rejection(response: httpx.Response) -> str:
    """A precise one-line reason for a 400 from ``POST /prompt``, naming node and input."""
    try:
        body = response.json()
    except ValueError:
        return f"prompt rejected: HTTP 400 {response.text[:200]}"
    if not isinstance(body, dict):
        return f"prompt rejected: {body!r:.200}"
    reasons: list[str] = []
    node_errors = body.get("node_errors")
    for node_id, info in node_errors.items() if isinstance(node_errors, dict) else ():
        info = info if isinstance(info, dict) else {}
        for err in info.get("errors") or ():
            extra = err.get("extra_info") or {}
            where = f"node {node_id} ({info.get('class_type', '?')})"
            if extra.get("input_name"):
                where += f" input '{extra['input_name']}'"
            reasons.append(f"{where}: {err.get('message')} [{err.get('type')}: {err.get('details')}]")
    error = body.get("error")
    if not reasons and isinstance(error, dict):
        details = f" ({error['details']})" if error.get("details") else ""
        reasons.append(f"{error.get('type')}: {error.get('message')}{details}")
    elif not reasons:
        reasons.append(str(error))
    return "prompt rejected: " + "; ".join(reasons)


def error_summary(result: RunResult) -> str:
    """What went wrong in a run, in one line."""
    data = result.error
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    if result.status == "interrupted":
        return f"prompt {result.prompt_id} was interrupted at {where}"
    message = str(data.get("exception_message", "")).strip()
    return f"prompt {result.prompt_id} failed at {where}: {data.get('exception_type')}: {message}"
