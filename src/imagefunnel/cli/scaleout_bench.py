"""``imagefunnel bench load`` and ``imagefunnel bench ray-scaling`` (registered in cli/bench.py)."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

Write = Annotated[Path | None, typer.Option(help="update this Markdown file's section (docs/benchmarks.md)")]


def _command(name: str) -> str:
    return f"imagefunnel bench {name} {shlex.join(sys.argv[3:])}".strip()


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected whole numbers separated by commas, e.g. 1,3,6"
        ) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{text!r}: every count must be at least 1")
    return values


def load_cmd(
    store: Annotated[
        str,
        typer.Option(
            envvar="IMAGEFUNNEL_BENCH_POSTGRES",
            help="PostgreSQL server to create the runs' scratch databases on",
        ),
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    workers: Annotated[str, typer.Option(help="worker process counts, one run each")] = "1,3,6",
    jobs: Annotated[int, typer.Option(min=1, max=500, help="jobs in flight at once")] = 12,
    duration: Annotated[float, typer.Option(min=1.0, help="seconds of load per run")] = 30.0,
    deliver: Annotated[int, typer.Option(min=1, help="K of each job")] = 2,
    write: Write = None,
) -> None:
    """N jobs in flight over the emulated market at 1, 3 and 6 workers sharing one PostgreSQL."""
    from imagefunnel.bench.load import LoadSettings, run_load
    from imagefunnel.bench.scaleout_report import load_markdown, write_block

    settings = LoadSettings(workers=_ints(workers), jobs_in_flight=jobs, duration_s=duration, deliver=deliver)
    # SIGTERM unwinds like Ctrl-C, so the worker processes and scratch databases are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    runs = run_load(settings, server_url=store, progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    text = load_markdown(runs, settings, command=_command("load"))
    console.print(text, markup=False, highlight=False)
    if write is not None:
        write_block(write, "load", text)
        console.print(f"wrote {write}")


def ray_scaling_cmd(
    images: Annotated[int, typer.Option(min=1, help="1 MP images per run")] = 24,
    workers: Annotated[str, typer.Option(help="Ray actor (and thread) counts, one run each")] = "1,2",
    use_case: Annotated[str, typer.Option(help="whose cascade scores the images")] = "headshot",
    write: Write = None,
) -> None:
    """Scoring throughput on a local Ray instance at 1, 2, ... actors, next to as many threads."""
    from imagefunnel.bench.ray_scaling import run_ray_scaling
    from imagefunnel.bench.scaleout_report import ray_markdown, write_block

    runs = run_ray_scaling(
        images=images,
        workers=_ints(workers),
        use_case=use_case,
        progress=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    text = ray_markdown(runs, command=_command("ray-scaling"), use_case=use_case)
    console.print(text, markup=False, highlight=False)
    if write is not None:
        write_block(write, "ray", text)
        console.print(f"wrote {write}")
