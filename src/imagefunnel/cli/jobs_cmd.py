"""``imagefunnel jobs list``: the jobs in an out folder's store, newest first, and how to resume each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagefunnel.cli.errors import print_error
from imagefunnel.cli.exit_codes import ExitCode

__all__ = ["jobs_app"]

jobs_app = typer.Typer(help="The jobs in an out folder's store.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@jobs_app.callback()
def _group() -> None:
    """The jobs in an out folder's store."""


@jobs_app.command("list")
def list_cmd(
    out: Annotated[Path, typer.Option("--out", help="the folder a job ran with (its store)")] = Path(
        "imagefunnel-out"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Every job in OUT's store, newest first: status, delivered of asked, spent, and for a job that
    stopped mid-way (running, and held by no live worker) the command that resumes it."""
    from imagefunnel.cli.jobs_list import LISTINGS, list_jobs, print_table
    from imagefunnel.errors import StoreError

    try:
        jobs = list_jobs(out)
    except StoreError as exc:
        print_error(err_console, exc)
        raise typer.Exit(ExitCode.FAILED) from None
    if as_json:
        typer.echo(LISTINGS.dump_json(jobs, indent=2).decode())
        return
    if not jobs:
        console.print(f"no jobs in {out}", markup=False, highlight=False)
        return
    print_table(console, jobs, out)
