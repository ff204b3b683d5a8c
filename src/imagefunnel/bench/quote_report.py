"""The quote-calibration benchmark as Markdown (its block of ``docs/benchmarks.md``) and its targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.bench.doc_blocks import write_marked_block
from imagefunnel.bench.quote_calibration import TOLERANCE, CalibrationRun
from imagefunnel.forecast import LIST_PRICE_SIGMA

__all__ = ["BEGIN", "END", "P95_TARGET", "QuoteBench", "markdown", "run_met", "write_block"]

BEGIN, END = "<!-- bench quote -->", "<!-- /bench quote -->"
HEADING = "## Quote calibration"
P95_TARGET = 0.93  # the share of jobs whose spend is at most the quoted p95


@dataclass(frozen=True, slots=True)
class QuoteBench:
    runs: tuple[CalibrationRun, ...]
    command: str
    seed: int
    simulations: int
    calibration_note: str  # how the verdicts were calibrated, in words
    seconds: float


def run_met(run: CalibrationRun) -> bool:
    """Every bin within ±3 points or within its noise, and the p95 share at its target."""
    return all(b.verdict != "fail" for b in run.bins()) and run.within_p95 >= P95_TARGET


def _pts(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:+.1f}"


def _summary(runs: Sequence[CalibrationRun]) -> list[str]:
    lines = [
        "| scenario | start | jobs | mean quoted P | delivered | Brier | bins pass / noise / fail "
        "| spend ≤ quoted p95 | billed over budget | met |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for run in runs:
        verdicts = [b.verdict for b in run.bins()]
        counts = " / ".join(str(verdicts.count(v)) for v in ("pass", "noise", "fail"))
        lines.append(
            f"| {run.scenario} | {run.start} | {len(run.jobs)} | {run.mean_quoted:.3f} "
            f"| {run.delivered_rate:.3f} | {run.brier:.3f} | {counts} | {run.within_p95:.1%} "
            f"| {run.over_budget} | {'yes' if run_met(run) else 'no'} |"
        )
    return lines


def _reliability(run: CalibrationRun) -> list[str]:
    lines = [
        f"**{run.scenario}, {run.start}**"
        + (
            f" ({run.unquotable} jobs no provider could take at quote time, left out)"
            if run.unquotable
            else ""
        ),
        "",
        "| quoted P | jobs | mean quoted | delivered | difference (pts) | ± SE (pts) | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for b in run.bins():
        lines.append(
            f"| {b.low:.2f}–{b.high:.2f} | {b.count} | {b.mean_quoted:.3f} | {b.observed:.3f} "
            f"| {_pts(b.difference)} | {100 * b.standard_error:.1f} | {b.verdict} |"
        )
    stops: dict[str, int] = {}
    for job in run.jobs:
        stops[job.stop] = stops.get(job.stop, 0) + 1
    ordered = ", ".join(f"{why} {n}" for why, n in sorted(stops.items(), key=lambda x: -x[1]))
    lines += [
        "",
        f"Stops: {ordered}. Spend ≤ quoted p95 in {run.within_p95:.1%} of jobs.{_confident(run)}",
        "",
    ]
    return lines


def _confident(run: CalibrationRun) -> str:
    """The jobs whose spec asked for a confidence, apart: quoted against delivered, by confidence."""
    parts = []
    for confidence in sorted({j.draw.confidence for j in run.jobs if j.draw.confidence is not None}):
        jobs = [j for j in run.jobs if j.draw.confidence == confidence]
        quoted = sum(j.quoted_p for j in jobs) / len(jobs)
        delivered = sum(j.delivered for j in jobs) / len(jobs)
        parts.append(
            f"{confidence:g}: {len(jobs)} jobs, mean quoted P {quoted:.3f}, delivered {delivered:.3f}"
        )
    return f" Jobs asking for a confidence (waves sized by it) — {'; '.join(parts)}." if parts else ""


def markdown(bench: QuoteBench) -> str:
    """The block between the markers (markers not included)."""
    lines = [
        f"`{bench.command}` (seed {bench.seed}, {bench.simulations} forecast simulations per quote; "
        f"{bench.seconds:.0f} s).",
        "",
        "Each job is quoted with what the router knows at that moment (a fresh router's options "
        "for its first request: adapter-visible prices at the learned charge/quote drift, health, "
        "the pass-rate posteriors; the scenario's stated latencies; a price risk of "
        f"σ={LIST_PRICE_SIGMA:g} (log) on each list-priced provider's bill, upwards only while it has not "
        "billed within the drift's half-life), then run in virtual time by the funnel's wave loop over the "
        "real Router and the market core; spend is what the market billed for its requests. "
        "**warm**: the pass rates and the drift learned by earlier jobs carry over; **cold**: every "
        f"job starts from the prior and no drift. One job in three asks for a `confidence` (0.9 or 0.99) "
        "and is quoted and run with waves sized by it. "
        f"{bench.calibration_note} A bin passes within ±{100 * TOLERANCE:.0f} points; "
        "**noise**: outside them but within two binomial standard errors (of the quoted rate, over "
        "the bin's jobs) beyond them; **fail** otherwise. Target: spend ≤ the quoted p95 in "
        f"≥ {P95_TARGET:.0%} of jobs.",
        "",
        *_summary(bench.runs),
        "",
    ]
    for run in bench.runs:
        lines += _reliability(run)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_block(path: Path, block: str) -> None:
    """Replace the block between the markers in ``path``, or add it under its own heading."""
    write_marked_block(path, start=BEGIN, end=END, block=f"{BEGIN}\n{block}{END}", heading=HEADING)
