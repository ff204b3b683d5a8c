"""``imagefunnel bench service``: what the HTTP service costs over calling the library.

On loopback, against a real uvicorn server in this process: evaluations API throughput and p50/p99
latency at several client concurrencies (one image per request), the same image scored in-process
by the same scorer, and the latency from a job's submit to its first server-sent event.

The service's overhead is measured per request and paired, because two separately measured p50s of
a scoring call that varies by tens of milliseconds cannot resolve a few: each response's
``Server-Timing`` header says how long the server spent decoding and scoring that image, and the
overhead of the request is what the client waited beyond that (HTTP, auth, parsing, storing,
serialising, thread hops). A second, header-free check interleaves the two ways (in-process, then
the service, then the other way round, on the same image), so that load drifting on a shared
machine cancels out of each pair. Clients and server share the process (and its GIL), so the
figures are an upper bound on the overhead a separate client would see.
"""

from __future__ import annotations

import asyncio
import io
import os
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
from imagefunnel.service.timing import parse_server_timing

__all__ = ["ConcurrencyRow", "PairedOverhead", "ServiceBench", "markdown", "run_service_bench"]

TARGET_MS = 10.0


@dataclass(frozen=True, slots=True)
class ConcurrencyRow:
    clients: int
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class PairedOverhead:
    """One client, requests interleaved with in-process scoring of the same image.

    ``overhead_*``: per request, client latency minus the server's own decode + score time (its
    ``Server-Timing``); ``handler_*``: the part of that spent inside the route (storing, hops);
    ``paired_*``: per pair, service latency minus in-process ``score_bytes`` time, no header used;
    ``cpu_p50_ms``: per pair, the process's CPU time for the request (client and server) minus that
    of the in-process call, which waiting for a busy machine's cores does not inflate.
    """

    pairs: int
    scoring_p50_ms: float
    overhead_p50_ms: float
    overhead_p99_ms: float
    handler_p50_ms: float
    store_p50_ms: float
    paired_p50_ms: float
    paired_p99_ms: float
    cpu_p50_ms: float


@dataclass(frozen=True, slots=True)
class ServiceBench:
    image: str
    in_process_p50_ms: float
    in_process_p99_ms: float
    rows: tuple[ConcurrencyRow, ...]
    first_event_ms: tuple[float, ...]
    paired: PairedOverhead
    load: str = ""  # the machine's load average when the run ended
    command: str = ""

    @property
    def side_by_side_ms(self) -> float:
        """The one-client p50 minus the in-process p50, measured apart (noisy: see the module doc)."""
        return self.rows[0].p50_ms - self.in_process_p50_ms

    @property
    def overhead_p50_ms(self) -> float:
        return self.paired.overhead_p50_ms


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _image(size: int) -> bytes:
    photo = resources.files("imagefunnel.market") / "assets" / "portraits" / "grace_hopper.jpg"
    img = Image.open(io.BytesIO(photo.read_bytes())).convert("RGB").resize((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _scorer(data: bytes) -> Scorer:
    scorer = Scorer(use_case="generic", score_all=True)  # what the evaluations API builds
    scorer.score_bytes(data)  # warm: models loaded once, as in a running service
    return scorer


def _time_in_process(scorer: Scorer, data: bytes) -> float:
    started = time.perf_counter()
    scorer.score_bytes(data)  # decodes and scores, as the service does for an upload
    return (time.perf_counter() - started) * 1000


def _in_process(scorer: Scorer, data: bytes, runs: int) -> list[float]:
    return [_time_in_process(scorer, data) for _ in range(runs)]


@dataclass(frozen=True, slots=True)
class _Timed:
    latency_ms: float
    server: dict[str, float]  # Server-Timing: read, decode, score, store, total
    cpu_ms: float = 0.0  # the process's CPU time over the request

    @property
    def overhead_ms(self) -> float:
        return self.latency_ms - self.server["decode"] - self.server["score"]

    @property
    def handler_ms(self) -> float:
        return self.server["total"] - self.server["decode"] - self.server["score"]


async def _post(http: httpx.AsyncClient, data: bytes) -> _Timed:
    files = {"images": ("bench.jpg", data, "image/jpeg")}
    cpu, started = time.process_time(), time.perf_counter()
    answer = await http.post("/v1/evaluations", files=files, data={"use_case": "generic"})
    latency, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    answer.raise_for_status()
    return _Timed(latency, parse_server_timing(answer.headers.get("server-timing", "")), cpu)


@dataclass(frozen=True, slots=True)
class _Local:
    latency_ms: float
    cpu_ms: float


def paired_overhead(local: Sequence[_Local], timed: Sequence[_Timed]) -> PairedOverhead:
    """Summarise pairs: ``local[i]`` in-process and ``timed[i]`` over HTTP, same image."""
    overhead = [t.overhead_ms for t in timed]
    paired = [t.latency_ms - one.latency_ms for one, t in zip(local, timed, strict=True)]
    return PairedOverhead(
        pairs=len(paired),
        scoring_p50_ms=statistics.median(t.server["decode"] + t.server["score"] for t in timed),
        overhead_p50_ms=statistics.median(overhead),
        overhead_p99_ms=_quantile(overhead, 0.99),
        handler_p50_ms=statistics.median(t.handler_ms for t in timed),
        store_p50_ms=statistics.median(t.server["store"] for t in timed),
        paired_p50_ms=statistics.median(paired),
        paired_p99_ms=_quantile(paired, 0.99),
        cpu_p50_ms=statistics.median(t.cpu_ms - one.cpu_ms for one, t in zip(local, timed, strict=True)),
    )


def _local(scorer: Scorer, data: bytes) -> _Local:
    cpu = time.process_time()
    latency = _time_in_process(scorer, data)
    return _Local(latency, (time.process_time() - cpu) * 1000)


async def _paired(base: str, key: str, data: bytes, scorer: Scorer, pairs: int) -> PairedOverhead:
    local: list[_Local] = []
    timed: list[_Timed] = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        for i in range(pairs):
            # Alternate which goes first, so that neither always runs right after the other.
            if i % 2 == 0:
                local.append(_local(scorer, data))
                timed.append(await _post(http, data))
            else:
                timed.append(await _post(http, data))
                local.append(_local(scorer, data))
    return paired_overhead(local, timed)


async def _clients(base: str, key: str, data: bytes, *, clients: int, requests: int) -> ConcurrencyRow:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {key}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            while not queue.empty():
                queue.get_nowait()
                latencies.append((await _post(http, data)).latency_ms)

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
    *,
    concurrency: Sequence[int] = (1, 8, 32),
    requests: int = 64,
    size: int = 512,
    jobs: int = 5,
    pairs: int = 40,
    in_process_runs: int | None = None,
) -> ServiceBench:
    data = _image(size)
    scorer = _scorer(data)
    local = _in_process(scorer, data, in_process_runs or max(20, requests // 2))
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
            paired = asyncio.run(_paired(base, key, data, scorer, pairs))
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
        paired=paired,
        load=", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "",
    )


def markdown(bench: ServiceBench) -> str:
    lines = [
        "## Service: evaluations API and job events",
        "",
        f"Command: `{bench.command}`. One image per request: {bench.image}; server and clients on loopback in one process; "
        f"{os.cpu_count()} cores, load average {bench.load} (1, 5, 15 min) when it ended.",
        "",
        "| clients | requests | requests/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.clients} | {r.requests} | {r.per_s:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} |"
        for r in bench.rows
    ]
    p = bench.paired
    met = "met" if p.overhead_p50_ms <= TARGET_MS else "not met"
    lines += [
        "",
        f"In-process scoring of the same image (`Scorer.score_bytes`, run apart): p50 {bench.in_process_p50_ms:.1f} ms, "
        f"p99 {bench.in_process_p99_ms:.1f} ms; one-client p50 minus that p50: {bench.side_by_side_ms:.1f} ms "
        "(two separate medians of a call that varies by more than the overhead: not the figure to judge by).",
        "",
        f"Service overhead, paired ({p.pairs} requests at one client, interleaved with in-process scoring of the "
        f"same image; the server's decode + score took p50 {p.scoring_p50_ms:.1f} ms):",
        "",
        "| per request | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| latency − server's decode + score (`Server-Timing`) | {p.overhead_p50_ms:.1f} | {p.overhead_p99_ms:.1f} |",
        f"| of which inside the route (reading the upload, storing, the thread hop) | {p.handler_p50_ms:.1f} | |",
        f"| of which storing (blob and one database commit) | {p.store_p50_ms:.1f} | |",
        f"| latency − in-process `score_bytes` of the same pair | {p.paired_p50_ms:.1f} | {p.paired_p99_ms:.1f} |",
        f"| CPU time (client and server) − in-process CPU time of the same pair | {p.cpu_p50_ms:.1f} | |",
        "",
        f"Service overhead at one client: **{p.overhead_p50_ms:.1f} ms p50** (target ≤ {TARGET_MS:.0f} ms: {met}; "
        f"p99 is the worst of {p.pairs}). The use case is generic, the cheapest dimension set the API offers (a "
        "spec can change thresholds, not drop dimensions); the headline figure does not depend on it, since "
        "each request is charged only for the time beyond its own decode and score. On a machine with more "
        "runnable threads than cores the wall-clock figure is mostly waiting: for a core at each hand-off "
        "between threads, and for the disk at the commit's fsync (kept: an evaluation is durable before its "
        f"answer is sent); the CPU the request itself costs is the {p.cpu_p50_ms:.1f} ms above.",
        "",
        f"Job submit → first server-sent event (`wave_started`), {len(bench.first_event_ms)} jobs one at a time: "
        f"median {statistics.median(bench.first_event_ms):.0f} ms, max {max(bench.first_event_ms):.0f} ms "
        "(includes building the job's scorer and routing its first wave).",
        "",
    ]
    return "\n".join(lines)
