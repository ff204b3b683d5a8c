"""``imagefunnel bench workflows``: what deploying a ComfyUI workflow costs over the raw protocol.

One run, one emulated ComfyUI box (the one ``workflows run --emulate`` starts, same time factor), a
model-free workflow, three ways to run it side by side:

* **raw**: the ComfyUI protocol by hand with httpx and a websocket: ``POST /prompt`` with a
  ``client_id``, wait on ``/ws`` for ``executing`` with ``node: null``, read ``/history/{id}``,
  ``GET /view`` the output. The floor.
* **library**: the deployed workflow through ``ComfyPool.run`` (what ``workflows run`` does: health
  and ``/object_info`` check of the box, input binding, submit, wait, download).
* **http**: the typed endpoint ``POST /v1/workflows/{name}/runs`` of the service app on loopback
  (API key, request model, the same pool behind it, the image back as base64).

Each iteration runs the three ways in a rotating order (so load drifting on a shared machine falls on
each way alike), with a distinct seeded colour per run so no run is answered from the box's cache.
``workflows add`` (fetch ``/object_info``, detect, validate, store a new version) is timed once.
Everything shares this machine's CPUs: the box, the service and the clients.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagefunnel.bench.doc_blocks import write_marked_block

if TYPE_CHECKING:
    import httpx

    from imagefunnel.workflows.registry import Deployed

__all__ = [
    "PATHS",
    "PathResult",
    "WorkflowBench",
    "bench_workflows_cmd",
    "markdown",
    "run_workflows_bench",
    "write_workflows_section",
]

PATHS = ("raw", "library", "http")
DEFAULT_WORKFLOWS = ("empty_blur_save",)
_START, _END = "<!-- bench workflows -->", "<!-- /bench workflows -->"
_TIME_FACTOR = 0.05  # as `workflows run --emulate`
_VARY = "empty_image_color"  # the int input each run sets to a fresh seeded value


@dataclass(frozen=True, slots=True)
class PathResult:
    path: str
    ms: tuple[float, ...]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    workflow: str
    add_ms: float
    paths: tuple[PathResult, ...]

    def path(self, name: str) -> PathResult:
        return next(p for p in self.paths if p.path == name)

    def paired_overhead_ms(self, name: str) -> float:
        """Median over iterations of (this way - raw), run by run."""
        raw = self.path("raw").ms
        return statistics.median(a - b for a, b in zip(self.path(name).ms, raw, strict=True))


@dataclass(frozen=True, slots=True)
class WorkflowBench:
    workflows: tuple[WorkflowResult, ...]
    runs: int
    seed: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    command: str = ""


def _workflow_file(name: str) -> Path:
    return Path(str(resources.files("imagefunnel.providers") / "workflows" / f"{name}.json"))


@contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _deploy(name: str, url: str, registry: Path) -> tuple[Deployed, float]:
    """``workflows add`` as the CLI does it, timed: /object_info, detect, validate, new version."""
    from imagefunnel.providers.comfyui_workflow import load_workflow
    from imagefunnel.workflows.detect import detect_inputs
    from imagefunnel.workflows.manifest import draft_inputs
    from imagefunnel.workflows.pool import ComfyBox, ComfyPool
    from imagefunnel.workflows.registry import WorkflowRegistry
    from imagefunnel.workflows.validate import check_workflow

    async def info() -> dict[str, Any]:
        pool = ComfyPool([ComfyBox("target", url, 1.0)])
        try:
            return await pool.object_info(pool.boxes[0])
        finally:
            await pool.aclose()

    started = time.perf_counter()
    flow = load_workflow(_workflow_file(name))
    import asyncio

    object_info = asyncio.run(info())
    checked = check_workflow(flow, draft_inputs(detect_inputs(flow, object_info=object_info)), object_info)
    deployed = WorkflowRegistry(registry).add(name.replace("_", "-"), flow, checked)
    return deployed, (time.perf_counter() - started) * 1000


async def _raw(http: httpx.AsyncClient, url: str, graph: dict[str, Any]) -> int:
    """One prompt by hand; returns the bytes of the output images."""
    from websockets.asyncio.client import connect

    client_id = uuid.uuid4().hex
    ws_url = url.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}"
    async with connect(ws_url, max_size=None) as ws:
        answer = await http.post(f"{url}/prompt", json={"prompt": graph, "client_id": client_id})
        answer.raise_for_status()
        prompt_id = answer.json()["prompt_id"]
        async for frame in ws:
            if not isinstance(frame, str):
                continue  # binary previews
            message = json.loads(frame)
            data = message.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if message.get("type") == "execution_error":
                raise RuntimeError(f"raw run failed: {data}")
            if message.get("type") == "executing" and data.get("node") is None:
                break
    history = (await http.get(f"{url}/history/{prompt_id}")).json()[prompt_id]
    total = 0
    for output in history["outputs"].values():
        for image in output.get("images", []):
            if image.get("type") != "output":
                continue
            view = await http.get(f"{url}/view", params=image)
            view.raise_for_status()
            total += len(view.content)
    if total == 0:
        raise RuntimeError("raw run returned no output image")
    return total


async def _measure(
    deployed: Deployed, box_url: str, service_url: str, key: str, colors: Iterator[int], runs: int
) -> tuple[PathResult, ...]:
    import base64

    import httpx

    from imagefunnel.workflows.manifest import apply_values, bind_values
    from imagefunnel.workflows.pool import ComfyBox, ComfyPool

    manifest = deployed.manifest
    headers = {"Authorization": f"Bearer {key}"}
    route = f"{service_url}/v1/workflows/{deployed.name}/runs"
    async with httpx.AsyncClient(timeout=60.0) as http:
        pool = ComfyPool([ComfyBox("emulated-box", box_url, 2.69)], client=http)

        async def raw(color: int) -> None:
            values = bind_values(manifest, {_VARY: color})
            await _raw(http, box_url, apply_values(deployed.workflow.graph, manifest, values, {}))

        async def library(color: int) -> None:
            run = await pool.run(deployed, bind_values(manifest, {_VARY: color}))
            if not run.images:
                raise RuntimeError("library run returned no image")

        async def service(color: int) -> None:
            answer = await http.post(route, json={"inputs": {_VARY: color}}, headers=headers)
            answer.raise_for_status()
            if not base64.b64decode(answer.json()["images"][0]["data_base64"]):
                raise RuntimeError("http run returned no image")

        ways: dict[str, Callable[[int], Any]] = {"raw": raw, "library": library, "http": service}
        for way in PATHS:  # warm-up: connections, caches, the service's first request
            await ways[way](next(colors))
        times: dict[str, list[float]] = {way: [] for way in PATHS}
        for i in range(runs):
            for way in PATHS[i % 3 :] + PATHS[: i % 3]:  # rotate who goes first
                started = time.perf_counter()
                await ways[way](next(colors))
                times[way].append((time.perf_counter() - started) * 1000)
    return tuple(PathResult(way, tuple(times[way])) for way in PATHS)


def run_workflows_bench(
    workflows: Sequence[str] = DEFAULT_WORKFLOWS,
    *,
    runs: int = 20,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> WorkflowBench:
    """Each workflow deployed once (timed) and run ``runs`` times each way, after one warm-up."""
    import uvicorn

    from imagefunnel.market.comfyui_app import ComfyUIBox, ComfyUIServer
    from imagefunnel.market.serving import ThreadedServer
    from imagefunnel.service import ServiceSettings, create_app

    rng = random.Random(seed)
    colors = iter(rng.sample(range(1 << 24), len(workflows) * (3 * runs + 3)))  # distinct: never cached
    load_before = os.getloadavg()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp,
        ComfyUIServer(ComfyUIBox(name="emulated-box", usd_per_hour=2.69), time_factor=_TIME_FACTOR) as box,
    ):
        registry = Path(tmp) / "registry"
        deployed = []
        for name in workflows:
            if progress is not None:
                progress(f"{name}: workflows add")
            deployed.append(_deploy(name, box.url, registry))
        env = {"IMAGEFUNNEL_WORKFLOWS": str(registry), "IMAGEFUNNEL_COMFYUI_SERVERS": box.url}
        with _env(env):
            settings = ServiceSettings(data_dir=Path(tmp) / "service", rate_per_s=1e6, rate_burst=1_000_000)
            app = create_app(settings, providers=lambda _s: [], run_background=False)
        key = app.state.runtime.tenancy.create_key("bench").secret
        server = ThreadedServer(
            uvicorn.Config(app, log_level="warning"), host="127.0.0.1", port=0, name="service"
        )
        service_url = f"http://127.0.0.1:{server.start()}"
        try:
            for (flow, add_ms), name in zip(deployed, workflows, strict=True):
                if progress is not None:
                    progress(f"{name}: {runs} runs x {len(PATHS)} ways, after one warm-up")
                import asyncio

                paths = asyncio.run(_measure(flow, box.url, service_url, key, colors, runs))
                results.append(WorkflowResult(flow.name, add_ms, paths))
        finally:
            server.stop()
    return WorkflowBench(tuple(results), runs, seed, load_before, os.getloadavg())


def markdown(report: WorkflowBench) -> str:
    def load(values: tuple[float, float, float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    lines = [
        _START,
        f"Command: `{report.command}`  ",
        f"One emulated ComfyUI box (time factor {_TIME_FACTOR:g}, as `workflows run --emulate`), the service "
        f"and the clients in one process on this machine; {report.runs} runs per way after one warm-up, "
        f"the ways interleaved, seed {report.seed}. Load average (1/5/15 min) before "
        f"{load(report.load_before)}, after {load(report.load_after)}.",
        "",
        "| workflow | way | p50 ms | p95 ms | p50 over raw (ms) | p50 × raw | paired median over raw (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for wf in report.workflows:
        raw = wf.path("raw").percentile(50)
        for p in wf.paths:
            p50 = p.percentile(50)
            over = "–" if p.path == "raw" else f"{p50 - raw:+.1f}"
            ratio = "1.00" if p.path == "raw" else f"{p50 / raw:.2f}" if raw > 0 else "–"
            paired = "–" if p.path == "raw" else f"{wf.paired_overhead_ms(p.path):+.1f}"
            lines.append(
                f"| {wf.workflow} | {p.path} | {p50:.1f} | {p.percentile(95):.1f} | {over} | {ratio} | {paired} |"
            )
    adds = ", ".join(f"{wf.workflow} {wf.add_ms:.1f} ms" for wf in report.workflows)
    lines += ["", f"`workflows add` (fetch /object_info, detect, validate, store a version), once: {adds}."]
    lines.append(_END)
    return "\n".join(lines) + "\n"


def write_workflows_section(path: Path, section: str) -> None:
    """Replace the generated block in ``path``, or add it under '## Workflow deployment'."""
    write_marked_block(path, start=_START, end=_END, block=section, heading="## Workflow deployment")


def bench_workflows_cmd(
    runs: Annotated[int, typer.Option(min=1, help="runs per way, after one warm-up")] = 20,
    seed: Annotated[int, typer.Option(help="seed of the per-run input values")] = 0,
    write: Annotated[Path | None, typer.Option(help="update this Markdown file's section")] = None,
) -> None:
    """Workflow round trip on an emulated ComfyUI box: raw protocol vs library vs HTTP endpoint."""
    from rich.console import Console

    console = Console()
    report = run_workflows_bench(
        DEFAULT_WORKFLOWS, runs=runs, seed=seed, progress=lambda msg: console.print(f"[dim]{msg}[/]")
    )
    command = ("imagefunnel bench workflows " + shlex.join(sys.argv[3:])).strip()
    report = replace(report, command=command)
    console.print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    if write is not None:
        write_workflows_section(write, markdown(report))
        console.print(f"wrote {write}")
