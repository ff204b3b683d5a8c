"""Markdown for the scale-out benchmarks, and its place in docs/benchmarks.md (under '## Scale-out')."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from imagefunnel.bench.doc_blocks import write_marked_block
from imagefunnel.bench.load import LoadRun, LoadSettings
from imagefunnel.bench.ray_scaling import ScalingRun

__all__ = ["load_markdown", "ray_markdown", "write_block"]

_HEADING = "## Scale-out"


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    day = datetime.now(UTC).date().isoformat()
    return f"{os.cpu_count()} cores, load average {load} (1, 5, 15 min) when it ended, {day}"


def load_markdown(runs: Sequence[LoadRun], settings: LoadSettings, *, command: str) -> str:
    lines = [
        f"`{command}` — {settings.jobs_in_flight} jobs in flight for {settings.duration_s:g} s per row, "
        f"K={settings.deliver} generic images of {settings.image_side}² each; {_machine()}.",
        "",
        "| workers | jobs each | images/s | × 1 worker | jobs ended | not delivered | failed attempts "
        "| job p50 s | job p99 s | peak RSS per worker MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = runs[0].images_per_s if runs and runs[0].images_per_s else math.nan
    for r in runs:
        rss = ", ".join(f"{m:.0f}" for m in r.peak_rss_mb)
        lines.append(
            f"| {r.workers} | {r.jobs_per_worker} | {r.images_per_s:.2f} | {r.images_per_s / base:.2f} "
            f"| {r.jobs_ended} | {r.jobs_not_delivered} | {r.failed_attempts} | {r.job_quantile(0.5):.1f} "
            f"| {r.job_quantile(0.99):.1f} | {rss} |"
        )
    return "\n".join(lines)


def ray_markdown(runs: Sequence[ScalingRun], *, command: str, use_case: str) -> str:
    lines = [
        f"`{command}` — {runs[0].images if runs else 0} 1 MP portraits, {use_case} cascade; {_machine()}.",
        "",
        "| executor | workers | images/s | × 1 worker | start-up s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        first = next(x for x in runs if x.executor == r.executor)
        lines.append(
            f"| {r.executor} | {r.workers} | {r.per_s:.2f} | {r.per_s / first.per_s:.2f} | {r.startup_s:.1f} |"
        )
    return "\n".join(lines)


def write_block(path: Path, key: str, body: str) -> None:
    """Put ``body`` between this benchmark's markers, replacing the last one; under '## Scale-out'."""
    start, end = f"<!-- bench:scaleout:{key}:start -->", f"<!-- bench:scaleout:{key}:end -->"
    write_marked_block(path, start=start, end=end, block=f"{start}\n{body}\n{end}", heading=_HEADING)
