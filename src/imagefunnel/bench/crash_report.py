"""Markdown for the crash bench, and its block in docs/benchmarks.md (under '## Crash and resume')."""

from __future__ import annotations

import os
from pathlib import Path

from imagefunnel.bench.crash import CrashReport, PointResult
from imagefunnel.bench.doc_blocks import write_marked_block

__all__ = ["crash_markdown", "write_block"]


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load} (1, 5, 15 min) when it ended"


def _row(r: PointResult) -> str:
    if r.point is None:
        where = "baseline (no kill)"
    else:
        where = f"{r.point.index}: attempt {r.point.after_purchases} + {r.point.delay_s * 1000:.0f} ms"
        if r.point.while_scoring:
            where += ", while an image is scored"
    kill = f"{r.attempts_at_kill} / {r.in_flight_at_kill}" if r.killed else "ended first"
    return (
        f"| {where} | {kill} | {r.resumes} | {r.status} {r.delivered}/{r.asked} | {r.attempts} "
        f"| {r.candidates} | {r.billed} | {r.closed_at_quote} | {r.candidates_lost} | {r.double_charges} "
        f"| {r.ledger_usd:.6f} | {r.billed_usd:.6f} | {r.ledger_delta_usd:+.6f} | {r.mismatched} "
        f"| {r.unnamed_billed} | {r.wall_s:.1f} |"
    )


def crash_markdown(report: CrashReport) -> str:
    s = report.settings
    n = len(report.points)
    named = sum(p.mismatched_named for p in report.points)
    unnamed_billed = sum(p.unnamed_billed for p in report.points)
    lines = [
        f"`{report.command}` — {n} kill points of a job of K={s.deliver} (at most {4 * s.deliver} "
        f"candidates, 256² generic images, concurrency {s.concurrency}), seed {s.seed}; {_machine()}, "
        f"{report.finished_at.date().isoformat()}.",
        "",
        f"**Totals over {n} kill points ({report.killed} landed before the job ended):** jobs delivered "
        f"K {report.delivered_jobs}/{n} · candidates lost {report.candidates_lost} · double charges "
        f"{report.double_charges} · ledger − billing ${report.ledger_delta_usd:+.6f} · requests whose "
        f"ledger charge differs from their bill {report.mismatched}: {named} named in the ledger; the "
        f"others are {report.mismatched - named - unnamed_billed} attempts closed at their quote under no "
        f"provider id, against {unnamed_billed} requests the provider billed under an id the ledger never "
        "learned (the naming window). Each such attempt without such a bill never reached the provider: "
        "it is booked all the same, since the process may have sent it.",
        "",
        "| kill point | attempts / in flight at kill | resumes | outcome | attempts | candidates "
        "| billed | closed at quote | lost | double | ledger $ | billed $ | ledger − billed $ "
        "| mismatched | billed, never named | wall s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(r) for r in (report.baseline, *report.points) if r is not None),
    ]
    return "\n".join(lines)


_START, _END = "<!-- bench:crash:start -->", "<!-- bench:crash:end -->"
_HEADING = "## Crash and resume"


def write_block(path: Path, body: str) -> None:
    """Replace the generated crash block in ``path``, or add it under its own heading."""
    write_marked_block(path, start=_START, end=_END, block=f"{_START}\n{body}\n{_END}", heading=_HEADING)
