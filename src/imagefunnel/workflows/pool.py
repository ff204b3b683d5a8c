"""Running deployed workflows on a pool of ComfyUI servers.

Health is per (server, workflow): a server is *up* for a workflow when ``/system_stats`` answers,
its ``/queue`` is readable, and its ``/object_info`` has every node class and every model file the
workflow names (a box without the checkpoint is not up, however healthy). Dispatch goes to the
least-loaded up server (queue depth); a failure there (HTTP, validation, execution error) is
retried on the next one. Cost is GPU seconds from the server's own execution timestamps
(``execution_start`` to the terminal message) times that server's $/hour.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from imagefunnel.errors import ProviderError, ProviderUnavailable, SpecError
from imagefunnel.providers.comfyui_client import ComfyUIClient
from imagefunnel.providers.comfyui_wire import Tracker, error_summary
from imagefunnel.workflows.manifest import apply_values
from imagefunnel.workflows.registry import Deployed
from imagefunnel.workflows.validate import check_workflow

__all__ = ["BoxHealth", "ComfyBox", "ComfyPool", "WorkflowImage", "WorkflowRun"]

_SNIFF = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp"}
_OBJECT_INFO_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class ComfyBox:
    name: str
    url: str
    usd_per_hour: float


@dataclass(frozen=True, slots=True)
class BoxHealth:
    box: str
    up: bool
    queue_depth: int
    detail: str


@dataclass(frozen=True, slots=True)
class WorkflowImage:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    workflow: str
    version: int
    box: str
    prompt_id: str
    images: tuple[WorkflowImage, ...]
    gpu_seconds: float
    usd: float
    seconds: float  # wall clock, submit to last download
    attempts: int


class ComfyPool:
    def __init__(
        self, boxes: Sequence[ComfyBox], *, timeout_s: float = 300.0, client: httpx.AsyncClient | None = None
    ) -> None:
        if not boxes:
            raise SpecError("a ComfyUI pool needs at least one server")
        self.boxes = tuple(boxes)
        self._timeout_s = timeout_s
        self._owns = client is None
        self._http = client or httpx.AsyncClient(timeout=httpx.Timeout(min(30.0, timeout_s)))
        self._info: dict[str, tuple[float, dict[str, Any]]] = {}

    def _api(self, box: ComfyBox) -> ComfyUIClient:
        return ComfyUIClient(provider=box.name, base_url=box.url, client=self._http, poll_interval_s=0.25)

    async def object_info(self, box: ComfyBox) -> dict[str, Any]:
        cached = self._info.get(box.name)
        if cached is not None and time.monotonic() - cached[0] < _OBJECT_INFO_TTL_S:
            return cached[1]
        info = await self._api(box).get_json("object_info", "object_info")
        self._info[box.name] = (time.monotonic(), info)
        return info

    async def health(self, box: ComfyBox, deployed: Deployed | None = None) -> BoxHealth:
        api = self._api(box)
        try:
            await api.get_json("system_stats", "system_stats")
            depth = (await api.queue()).depth
            if deployed is not None:
                check_workflow(deployed.workflow, deployed.manifest.inputs, await self.object_info(box))
        except (ProviderError, SpecError) as exc:
            return BoxHealth(box.name, False, 0, str(exc))
        return BoxHealth(box.name, True, depth, f"queue {depth}")

    async def run(
        self, deployed: Deployed, values: Mapping[str, Any], images: Mapping[str, bytes] | None = None
    ) -> WorkflowRun:
        """Run on the least-loaded up server, retrying on the next ones; ProviderUnavailable if none could."""
        healths = await asyncio.gather(*(self.health(box, deployed) for box in self.boxes))
        up = sorted((h for h in healths if h.up), key=lambda h: (h.queue_depth, h.box))
        reasons = [f"{h.box}: {h.detail}" for h in healths if not h.up]
        by_name = {box.name: box for box in self.boxes}
        for attempt, health in enumerate(up, start=1):
            try:
                return await self._run_on(by_name[health.box], deployed, values, images or {}, attempt)
            except ProviderError as exc:
                reasons.append(f"{health.box}: {exc}")
        raise ProviderUnavailable(
            f"no server could run workflow {deployed.name}: " + "; ".join(reasons), provider="comfyui-pool"
        )

    async def _run_on(
        self,
        box: ComfyBox,
        deployed: Deployed,
        values: Mapping[str, Any],
        images: Mapping[str, bytes],
        attempt: int,
    ) -> WorkflowRun:
        api = self._api(box)
        started = time.monotonic()
        client_id = uuid.uuid4().hex
        ws = await api.connect(client_id)
        try:
            uploaded = {name: await self._upload(api, data) for name, data in images.items()}
            graph = apply_values(deployed.workflow.graph, deployed.manifest, values, uploaded)
            async with asyncio.timeout(self._timeout_s):
                prompt_id = await api.submit(graph, client_id=client_id, prompt_id=str(uuid.uuid4()))
                result = await api.wait(ws, prompt_id, Tracker())
        finally:
            if ws is not None:
                await ws.close()
        gpu_seconds = result.gpu_seconds or 0.0
        usd = gpu_seconds * box.usd_per_hour / 3600
        if result.status != "success":
            raise ProviderUnavailable(error_summary(result), provider=box.name, charged_usd=usd)
        wanted = deployed.manifest.output_node
        outputs = [
            image for image in result.images if image.type == "output" and wanted in (None, image.node_id)
        ]
        fetched: list[WorkflowImage] = []
        for image in outputs:
            fetched.append(
                WorkflowImage(image.filename, await api.view(image, max_bytes=50_000_000, charged=usd))
            )
        return WorkflowRun(
            workflow=deployed.name,
            version=deployed.manifest.version,
            box=box.name,
            prompt_id=prompt_id,
            images=tuple(fetched),
            gpu_seconds=gpu_seconds,
            usd=usd,
            seconds=time.monotonic() - started,
            attempts=attempt,
        )

    @staticmethod
    async def _upload(api: ComfyUIClient, data: bytes) -> str:
        extension = next((ext for magic, ext in _SNIFF.items() if data.startswith(magic)), "png")
        name = f"wf_{hashlib.sha256(data).hexdigest()[:24]}.{extension}"  # content-addressed
        return await api.upload_image(data, name, subfolder="imagefunnel")

    async def aclose(self) -> None:
        if self._owns:
            await self._http.aclose()
