"""``imagefunnel bench bg-removal``: cost per delivered cutout, self-hosted only vs API only vs routed.

One run, three modes on the same photos and the same market (the ``bg-removal`` scenario, fresh for
each mode, so every mode meets the same fault draws): the real funnel and router, the real
self-hosted model (mediapipe, on this machine's CPU, priced at ``usd_per_hour``), the emulated APIs
over loopback HTTP. Cost counts every charge (rejected cutouts and the model's load time included)
and is divided by cutouts *delivered*; a delivered API cutout that the market's truth says was
garbage is counted too, so a scorer that lets garbage through cannot flatter the numbers.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagefunnel.bench.doc_blocks import write_marked_block
from imagefunnel.cutouts import CutoutOutcome, run_cutouts
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Provider
from imagefunnel.providers.cutout_api import RemoveBgProvider
from imagefunnel.providers.local import LocalWorkerProvider
from imagefunnel.providers.segmentation import local_cutout_provider
from imagefunnel.routing import Router
from imagefunnel.store import BlobStore, Store

__all__ = ["MODES", "BgBenchReport", "BgModeResult", "markdown", "run_bg_removal_bench", "write_bg_section"]

MODES = ("self-hosted", "api", "routed")
_START, _END = "<!-- bench:bg-removal -->", "<!-- /bench:bg-removal -->"


@dataclass(frozen=True, slots=True)
class BgModeResult:
    mode: str
    jobs: int
    delivered: int
    spend_usd: float
    wall_s: float
    job_seconds: tuple[float, ...]
    delivered_by: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    garbage_delivered: int = 0
    cold_starts: int = 0
    cold_start_s: float | None = None
    local_refusals: int = 0

    @property
    def cost_per_delivered(self) -> float:
        return self.spend_usd / self.delivered if self.delivered else float("inf")

    @property
    def throughput_per_min(self) -> float:
        return 60.0 * self.delivered / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.job_seconds)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class BgBenchReport:
    modes: tuple[BgModeResult, ...]
    photos: int
    repeats: int
    concurrency: int
    usd_per_hour: float
    boot_s: float
    command: str = ""

    def mode(self, name: str) -> BgModeResult:
        return next(result for result in self.modes if result.mode == name)


def _providers(mode: str, market: MarketServer, local: LocalWorkerProvider) -> list[Provider]:
    apis: list[Provider] = [
        RemoveBgProvider(
            name=profile.name,
            base_url=market.base_url(profile.name),
            api_key="bench",
            usd_per_credit=profile.usd_per_image,
        )
        for profile in market.scenario.cutout_apis
    ]
    if mode == "self-hosted":
        return [local]
    if mode == "api":
        return apis
    return [local, *apis]


async def _run_mode(
    mode: str, photos: Sequence[Path], *, concurrency: int, usd_per_hour: float, boot_s: float, work: Path
) -> BgModeResult:
    routed = mode == "routed"
    # Self-hosted only must wait for its worker; routed lets a cold or busy worker send work to an API.
    local = local_cutout_provider(
        usd_per_hour=usd_per_hour,
        boot_s=boot_s,
        serve_cold=not routed,
        max_queue=concurrency if routed else None,
    )
    store = Store(f"sqlite:///{work / f'{mode}.db'}")
    blobs = BlobStore(work / f"{mode}-blobs")
    with MarketServer("bg-removal") as market:
        providers = _providers(mode, market, local)
        router = Router(providers, ledger=store, seed=0)
        started = time.perf_counter()
        try:
            outcomes = await run_cutouts(
                photos, providers, store=store, blobs=blobs, concurrency=concurrency, router=router
            )
        finally:
            wall = time.perf_counter() - started
            for provider in providers:
                await provider.aclose()
        garbage = sum(_was_garbage(market, outcome) for outcome in outcomes)
    store.close()
    delivered = [o for o in outcomes if o.status == "delivered"]
    return BgModeResult(
        mode=mode,
        jobs=len(outcomes),
        delivered=len(delivered),
        spend_usd=sum(o.spent_usd for o in outcomes),
        wall_s=wall,
        job_seconds=tuple(o.seconds for o in outcomes),
        delivered_by=dict(Counter(o.provider for o in delivered if o.provider is not None)),
        candidates=sum(o.candidates for o in outcomes),
        garbage_delivered=garbage,
        cold_starts=local.cold_starts if mode != "api" else 0,
        cold_start_s=local.cold_start_s if mode != "api" else None,
        local_refusals=local.refused if mode != "api" else 0,
    )


def _was_garbage(market: MarketServer, outcome: CutoutOutcome) -> bool:
    if outcome.status != "delivered" or outcome.provider_request_id is None:
        return False
    try:
        return market.cutouts.truth(outcome.provider_request_id).garbage is not None
    except KeyError:
        return False  # the self-hosted model: the market has no truth about it


def run_bg_removal_bench(
    photos: Sequence[Path],
    *,
    repeats: int = 3,
    concurrency: int = 4,
    usd_per_hour: float = 0.40,
    boot_s: float = 2.0,
    modes: Sequence[str] = MODES,
    progress: Callable[[str], None] | None = None,
) -> BgBenchReport:
    """Every mode on ``photos`` x ``repeats`` jobs, one after another on this machine."""
    workload = [photo for _ in range(repeats) for photo in photos]
    results = []
    with tempfile.TemporaryDirectory(prefix="bg-bench-") as tmp:
        for mode in modes:
            if progress is not None:
                progress(f"{mode}: {len(workload)} cutouts, {concurrency} at a time")
            result = asyncio.run(
                _run_mode(
                    mode,
                    workload,
                    concurrency=concurrency,
                    usd_per_hour=usd_per_hour,
                    boot_s=boot_s,
                    work=Path(tmp),
                )
            )
            results.append(result)
    return BgBenchReport(
        modes=tuple(results),
        photos=len(photos),
        repeats=repeats,
        concurrency=concurrency,
        usd_per_hour=usd_per_hour,
        boot_s=boot_s,
    )


def markdown(report: BgBenchReport) -> str:
    lines = [
        _START,
        f"Command: `{report.command}`  ",
        f"{report.photos} photos x {report.repeats} = {report.photos * report.repeats} jobs per mode, "
        f"{report.concurrency} at a time; self-hosted priced at ${report.usd_per_hour:.2f}/hour of "
        f"measured compute, cold start = measured model load + {report.boot_s:g} s modelled boot.",
        "",
        "| mode | delivered | $ / delivered cutout | × API only | cutouts / min | p50 s | p95 s "
        "| candidates | delivered by | garbage delivered | cold starts (s) | local refusals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    api = report.mode("api").cost_per_delivered if any(m.mode == "api" for m in report.modes) else None
    for m in report.modes:
        ratio = f"{m.cost_per_delivered / api:.3f}" if api else "–"
        by = ", ".join(f"{name} {count}" for name, count in sorted(m.delivered_by.items()))
        cold = f"{m.cold_starts} ({m.cold_start_s:.1f})" if m.cold_start_s is not None else "–"
        lines.append(
            f"| {m.mode} | {m.delivered}/{m.jobs} | {m.cost_per_delivered:.5f} | {ratio} "
            f"| {m.throughput_per_min:.1f} | {m.percentile(50):.1f} | {m.percentile(95):.1f} "
            f"| {m.candidates} | {by} | {m.garbage_delivered} | {cold} | {m.local_refusals} |"
        )
    lines.append(_END)
    return "\n".join(lines) + "\n"


def write_bg_section(path: Path, section: str) -> None:
    """Replace the generated block in ``path``, or add it under '## Background removal'."""
    write_marked_block(path, start=_START, end=_END, block=section, heading="## Background removal")
