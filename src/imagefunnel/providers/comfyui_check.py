"""``check_server``: verify a (real) ComfyUI server end to end before routing work to it.

Steps, stopping at the first failure, each with a precise reason (what ``imagefunnel providers check
URL`` prints): ``system_stats`` (reachable, which version and device) → ``object_info`` (every node
class the workflow uses exists) → ``websocket`` (the feed answers with our client id) → ``upload``
(only for a workflow with ``LoadImage``) → ``prompt`` (a tiny model-free prompt runs to
``executing {node: null}``) → ``history`` (success, with an image output) → ``view`` (the image
downloads and decodes; for the default workflow, its pixels are the known answer).

The default workflow (``EmptyImage → ImageBlur → ImageInvert → SaveImage``) needs no model weights;
a random colour makes every check a fresh, uncached run whose result is known in advance.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from imagefunnel.errors import ImageError, ProviderError, SpecError
from imagefunnel.imaging import decode_image
from imagefunnel.providers.comfyui_client import ComfyUIClient
from imagefunnel.providers.comfyui_wire import RunResult, Tracker, error_summary
from imagefunnel.providers.comfyui_workflow import Injection, Workflow, inject, load_workflow

__all__ = ["CheckReport", "CheckStep", "check_server"]

_KNOWN_ANSWER_CLASSES = frozenset({"EmptyImage", "ImageBlur", "ImageInvert", "SaveImage"})


@dataclass(frozen=True, slots=True)
class CheckStep:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CheckReport:
    url: str
    workflow: str
    steps: tuple[CheckStep, ...]
    comfyui_version: str | None = None
    device: str | None = None
    prompt_id: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> CheckStep | None:
        return next((step for step in self.steps if not step.ok), None)

    def lines(self) -> list[str]:
        """One line per step, then the verdict (for the CLI)."""
        out = [
            f"{'ok  ' if s.ok else 'FAIL'} {s.name:<12} {s.detail} ({s.seconds * 1000:.0f} ms)"
            for s in self.steps
        ]
        verdict = (
            "ready" if self.ok else f"not usable: {self.failure.detail if self.failure else 'no checks ran'}"
        )
        out.append(f"{self.url}: {verdict}")
        return out


class _Failed(Exception):
    pass


async def check_server(
    url: str,
    *,
    workflow: str | Path | Workflow = "empty_blur_save",
    timeout_s: float = 60.0,
    headers: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> CheckReport:
    """Run every check against ``url``; never raises for a broken server, it reports it."""
    flow = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(min(timeout_s, 30.0)))
    api = ComfyUIClient(provider=url, base_url=url, client=http, headers=headers, poll_interval_s=0.25)
    run = _Check(api, flow, timeout_s)
    try:
        await run.all()
    finally:
        if client is None:
            await http.aclose()
    return CheckReport(
        url=url,
        workflow=flow.name,
        steps=tuple(run.steps),
        comfyui_version=run.version,
        device=run.device,
        prompt_id=run.prompt_id,
    )


class _Check:
    def __init__(self, api: ComfyUIClient, workflow: Workflow, timeout_s: float) -> None:
        self.api = api
        self.workflow = workflow
        self.timeout_s = timeout_s
        self.steps: list[CheckStep] = []
        self.version: str | None = None
        self.device: str | None = None
        self.prompt_id: str | None = None
        self.client_id = uuid.uuid4().hex
        self.color = random.randrange(0x100000, 0xFFFFFF)  # fresh each time: never a cached run
        self.image_name: str | None = None
        self.result: RunResult | None = None

    async def all(self) -> None:
        checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("system_stats", self.system_stats),
            ("object_info", self.object_info),
        ]
        if "LoadImage" in self.workflow.classes():
            checks.append(("upload", self.upload))
        checks += [("prompt", self.prompt), ("history", self.history), ("view", self.view)]
        for name, check in checks:
            started = time.monotonic()
            try:
                detail = await check()
            except (_Failed, ProviderError, SpecError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {self.timeout_s:g} s"
                self.steps.append(CheckStep(name, False, reason, time.monotonic() - started))
                return
            self.steps.append(CheckStep(name, True, detail, time.monotonic() - started))

    async def system_stats(self) -> str:
        stats = await self.api.get_json("system_stats", "system_stats")
        system, devices = stats.get("system"), stats.get("devices")
        if not isinstance(system, dict) or not isinstance(devices, list) or not devices:
            raise _Failed("system_stats lacks 'system' or 'devices': not a ComfyUI server?")
        self.version = str(system.get("comfyui_version", "unknown"))
        device = devices[0] if isinstance(devices[0], dict) else {}
        self.device = str(device.get("name", "unknown"))
        return f"ComfyUI {self.version} on {self.device}"

    async def object_info(self) -> str:
        missing = []
        for class_type in sorted(self.workflow.classes()):
            info = await self.api.get_json(f"object_info/{class_type}", "object_info")
            if class_type not in info:
                missing.append(class_type)
        if missing:
            raise _Failed(
                f"server lacks node class(es) {', '.join(missing)} used by workflow {self.workflow.name}"
            )
        return f"{len(self.workflow.classes())} node classes present"

    async def upload(self) -> str:
        buf = io.BytesIO()
        gradient = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
        Image.fromarray(gradient).save(buf, format="PNG")
        name = f"imagefunnel_check_{uuid.uuid4().hex[:12]}.png"
        self.image_name = await self.api.upload_image(buf.getvalue(), name, subfolder="imagefunnel")
        return f"uploaded as {self.image_name}"

    async def prompt(self) -> str:
        graph = inject(self.workflow, Injection(image=self.image_name))
        for node in graph.values():
            if node["class_type"] == "EmptyImage":
                node["inputs"]["color"] = self.color
        ws = await self.api.connect(self.client_id)
        if ws is None:
            raise _Failed("the server offers no websocket at /ws (a proxy without websocket support?)")
        try:
            async with asyncio.timeout(self.timeout_s):
                self.prompt_id = await self.api.submit(
                    graph, client_id=self.client_id, prompt_id=str(uuid.uuid4())
                )
                self.result = await self.api.wait(ws, self.prompt_id, Tracker())
        finally:
            await ws.close()
        if self.result.via != "websocket":
            raise _Failed(
                "the websocket closed before the prompt finished (history polling had to take over)"
            )
        seconds = self.result.gpu_seconds
        took = f" in {seconds * 1000:.0f} ms of server time" if seconds is not None else ""
        return f"prompt {self.prompt_id} ran to executing(node=null){took}"

    async def history(self) -> str:
        result = self.result
        if result is None:  # pragma: no cover - the prompt step sets it or fails
            raise _Failed("no prompt ran")
        if result.status != "success":
            raise _Failed(error_summary(result))
        if not result.images:
            raise _Failed(f"history of {result.prompt_id} lists no image output")
        image = result.images[0]
        return f"{len(result.images)} image(s): {image.subfolder}/{image.filename} ({image.type})"

    async def view(self) -> str:
        if self.result is None or not self.result.images:  # pragma: no cover - history checked it
            raise _Failed("no image to fetch")
        image = self.result.images[0]
        data = await self.api.view(image, max_bytes=50_000_000, charged=0.0)
        try:
            decoded = decode_image(data)
        except ImageError as exc:
            raise _Failed(f"/view returned {len(data)} bytes that are not a usable image: {exc}") from exc
        height, width = decoded.rgb.shape[:2]
        detail = f"{decoded.format} {width}x{height}"
        expected = self._known_answer()
        if expected is not None:
            got = tuple(int(v) for v in decoded.rgb[height // 2, width // 2])
            if max(abs(a - b) for a, b in zip(got, expected, strict=True)) > 2:
                raise _Failed(f"{detail}: centre pixel {got}, expected {expected} (blurred, inverted colour)")
            detail += f", centre pixel {got} as expected"
        return detail

    def _known_answer(self) -> tuple[int, int, int] | None:
        if self.workflow.classes() != _KNOWN_ANSWER_CLASSES:
            return None
        color = self.color
        return (255 - (color >> 16 & 0xFF), 255 - (color >> 8 & 0xFF), 255 - (color & 0xFF))
