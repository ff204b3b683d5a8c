"""``imagefunnel bench service``: what the HTTP service costs over calling the library.

On loopback, against a real uvicorn server in this process: evaluations API throughput and p50/p99
latency at several client concurrencies (one image per request), the same image scored in-process
by the same scorer (the service's overhead is the difference of the p50s at one client), and the
latency from a job's submit to its first server-sent event. Clients and server share the process
(and its GIL), so the figures are an upper bound on the overhead a separate client would see.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import uvicorn
from PIL import Image

from imagefunnel.cli.demo import market_providers
from imagefunnel.market.server import MarketServer
from imagefunnel.market.serving import ThreadedServer
from imagefunnel.scoring import Scorer
from imagefunnel.service import ServiceSettings, create_app

__all__ = ["ConcurrencyRow", "ServiceBench", "markdown", "run_service_bench"]


@dataclass(frozen=True, slots=True)
class ConcurrencyRow:
    clients: int
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class ServiceBench:
    image: str
    in_process_p50_ms: float
    in_process_p99_ms: float
    rows: tuple[ConcurrencyRow, ...]
    first_event_ms: tuple[float, ...]
    command: str = ""

    @property
    def overhead_p50_ms(self) -> float:
        return self.rows[0].p50_ms - self.in_process_p50_ms


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _image(size: int) -> bytes:
    photo = resources.files("imagefunnel.market") / "assets" / "portraits" / "grace_hopper.jpg"
    img = Image.open(io.BytesIO(photo.read_bytes())).convert("RGB").resize((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _in_process(data: bytes, runs: int) -> list[float]:
    scorer = Scorer(use_case="generic", score_all=True)  # what the evaluations API builds
    scorer.score_bytes(data)  # warm: models loaded once, as in a running service
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        scorer.score_bytes(data)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _clients(base: str, key: str, data: bytes, *, clients: int, requests: int) -> ConcurrencyRow:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {key}"}
    files = {"images": ("bench.jpg", data, "image/jpeg")}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                answer = await http.post("/v1/evaluations", files=files, data={"use_case": "generic"})
                answer.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    return ConcurrencyRow(
        clients, requests, requests / wall, _quantile(latencies, 0.5), _quantile(latencies, 0.99)
    )


async def _first_events(base: str, key: str, jobs: int) -> list[float]:
    spec = {
        "prompts": ["a vase"],
        "use_case": "generic",
        "deliver": 1,
        "budget_usd": 1.0,
        "size": {"width": 256, "height": 256},
    }
    out = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        for _ in range(jobs):
            started = time.perf_counter()
            job = (await http.post("/v1/jobs", json=spec)).json()
            first: float | None = None
            async with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
                async for line in stream.aiter_lines():  # read to the end: one job at a time
                    if line.startswith("event:") and first is None:
                        first = (time.perf_counter() - started) * 1000
            if first is not None:
                out.append(first)
    return out


def run_service_bench(
    *, concurrency: Sequence[int] = (1, 8, 32), requests: int = 64, size: int = 512, jobs: int = 5
) -> ServiceBench:
    data = _image(size)
    local = _in_process(data, max(20, requests // 2))
    with tempfile.TemporaryDirectory() as folder, MarketServer("calm") as market:
        settings = ServiceSettings(data_dir=Path(folder), rate_per_s=1e6, rate_burst=1_000_000, poll_s=0.5)
        app = create_app(settings, providers=lambda s: market_providers(market, s.model))
        key = app.state.runtime.tenancy.create_key("bench").secret
        server = ThreadedServer(
            uvicorn.Config(app, log_level="warning"), host="127.0.0.1", port=0, name="service"
        )
        port = server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_clients(base, key, data, clients=1, requests=5))  # warm the scorer cache
            rows = tuple(
                asyncio.run(_clients(base, key, data, clients=c, requests=max(requests, 2 * c)))
                for c in concurrency
            )
            first = tuple(asyncio.run(_first_events(base, key, jobs)))
        finally:
            server.stop()
    return ServiceBench(
        image=f"{size}x{size} JPEG ({len(data) // 1024} KiB), use case generic",
        in_process_p50_ms=_quantile(local, 0.5),
        in_process_p99_ms=_quantile(local, 0.99),
        rows=rows,
        first_event_ms=first,
    )


def markdown(bench: ServiceBench) -> str:
    lines = [
        "## Service: evaluations API and job events",
        "",
        f"Command: `{bench.command}`. One image per request: {bench.image}; server and clients on loopback in one process.",
        "",
        "| clients | requests | requests/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.clients} | {r.requests} | {r.per_s:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} |"
        for r in bench.rows
    ]
    met = "met" if bench.overhead_p50_ms <= 10 else "not met"
    lines += [
        "",
        f"In-process scoring of the same image: p50 {bench.in_process_p50_ms:.1f} ms, p99 {bench.in_process_p99_ms:.1f} ms.",
        f"Service overhead at one client (p50 over in-process p50): **{bench.overhead_p50_ms:.1f} ms** (target ≤ 10 ms: {met}).",
        "",
        f"Job submit → first server-sent event (`wave_started`), {len(bench.first_event_ms)} jobs one at a time: "
        f"median {statistics.median(bench.first_event_ms):.0f} ms, max {max(bench.first_event_ms):.0f} ms "
        "(includes building the job's scorer and routing its first wave).",
        "",
    ]
    return "\n".join(lines)
