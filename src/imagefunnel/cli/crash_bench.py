"""``imagefunnel bench crash`` (registered in cli/bench.py): kill -9 jobs at seeded points, resume them."""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagefunnel.cli.exit_codes import ExitCode

console = Console()


def crash_cmd(
    kills: Annotated[int, typer.Option(min=1, help="seeded random kill points, one job each")] = 20,
    deliver: Annotated[int, typer.Option(min=1, help="K of each job (candidate cap 4K)")] = 60,
    seed: Annotated[int, typer.Option(help="seed of the kill points and the jobs")] = 0,
    scenario: Annotated[
        str | None,
        typer.Option(help="built-in scenario name or YAML path (default: two steady fal providers)"),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight per job")] = 4,
    work: Annotated[
        Path | None, typer.Option(help="folder for the jobs' stores and logs (default: a new temp folder)")
    ] = None,
    write: Annotated[
        Path | None, typer.Option(help="update this Markdown file's section (docs/benchmarks.md)")
    ] = None,
) -> None:
    """SIGKILL `imagefunnel run` at seeded random points, resume each job until it ends, and compare
    its store with the billing log of the one market every job bought from. Exit code 1 when any job
    missed K, lost a candidate, was charged twice or disagrees with the billing log."""
    from imagefunnel.bench.crash import CrashSettings, run_crash_bench
    from imagefunnel.bench.crash_report import crash_markdown, write_block

    settings = CrashSettings(
        kills=kills, deliver=deliver, seed=seed, scenario=scenario, concurrency=concurrency
    )
    folder = work if work is not None else Path(tempfile.mkdtemp(prefix="imagefunnel-crash-"))
    console.print(f"[dim]jobs, stores and logs in {folder}[/]")
    report = run_crash_bench(
        settings, work_dir=folder, progress=lambda msg: console.print(msg, markup=False, highlight=False)
    )
    command = f"imagefunnel bench crash {shlex.join(_without_work(sys.argv[3:]))}".strip()
    report = dataclasses.replace(report, command=command)
    text = crash_markdown(report)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if write is not None:
        write_block(write, text)
        console.print(f"wrote {write}")
    clean = all(point.clean for point in report.points)
    raise typer.Exit(ExitCode.OK if clean else ExitCode.PARTIAL)


def _without_work(args: list[str]) -> list[str]:
    """The arguments less ``--work DIR``: where the scratch files went says nothing of the result."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--work":
            skip = True
        elif not arg.startswith("--work="):
            kept.append(arg)
    return kept
