"""``imagefunnel bench quote`` (registered in cli/bench.py): is the forecast calibrated on the market?"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagefunnel.cli.exit_codes import ExitCode

console = Console()

DEFAULT_SCENARIOS = ("seed-market", "outage", "price-spike")


def quote_bench_cmd(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="built-in scenario name or YAML path; repeat it (default: seed-market, outage, price-spike)"
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="seeded jobs per scenario and start")] = 200,
    start: Annotated[
        list[str] | None,
        typer.Option(
            help="warm (pass rates and price drift carried job to job) or cold (the prior); repeat it"
        ),
    ] = None,
    simulations: Annotated[int, typer.Option(min=100, help="forecast simulations per quote")] = 2000,
    calibration_samples: Annotated[
        int, typer.Option(min=1, help="rendered images per defect label to calibrate the verdicts")
    ] = 8,
    seed: Annotated[int, typer.Option(help="seed of the jobs, the verdicts and the forecasts")] = 0,
    write: Annotated[
        Path | None, typer.Option(help="update this Markdown file's block (docs/benchmarks.md)")
    ] = None,
) -> None:
    """Quote seeded jobs of varied K, budget and deadline with the forecast, run each in the simulated
    market, and compare: a reliability table of quoted P(deliver) against delivery, and the share of
    jobs whose spend stayed under the quoted p95. Exit code 1 when a scenario misses a target."""
    from imagefunnel.bench.quote_calibration import STARTS, run_calibration
    from imagefunnel.bench.quote_report import QuoteBench, markdown, run_met, write_block
    from imagefunnel.bench.verdicts import calibrate_scorer, scenario_defects
    from imagefunnel.market.scenario import load_scenario

    starts = start or list(STARTS)
    unknown = [s for s in starts if s not in STARTS]
    if unknown:
        raise typer.BadParameter(f"{unknown[0]!r}: one of {', '.join(STARTS)}", param_hint="--start")
    began = time.perf_counter()
    scenarios = [load_scenario(name) for name in scenario or DEFAULT_SCENARIOS]
    defects = sorted({d for s in scenarios for d in scenario_defects(s)}, key=lambda d: d.value)
    console.print(f"[dim]calibrating verdicts: {calibration_samples} rendered images per label[/]")
    calibration = calibrate_scorer(defects, samples=calibration_samples, width=1024, height=1024, seed=seed)
    runs = []
    for market in scenarios:
        for begin in starts:
            console.print(f"[dim]{market.name}, {begin}: {jobs} jobs[/]")
            runs.append(
                run_calibration(
                    market,
                    jobs=jobs,
                    start=begin,
                    calibration=calibration,
                    simulations=simulations,
                    seed=seed,
                )
            )
    note = (
        f"Verdicts: the scorer's measured reject rate per label ({calibration_samples} rendered 1024² "
        "market images each), drawn per candidate."
    )
    bench = QuoteBench(
        runs=tuple(runs),
        command=f"imagefunnel bench quote {shlex.join(sys.argv[3:])}".strip(),
        seed=seed,
        simulations=simulations,
        calibration_note=note,
        seconds=time.perf_counter() - began,
    )
    text = markdown(bench)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if write is not None:
        write_block(write, text)
        console.print(f"wrote {write}")
    raise typer.Exit(ExitCode.OK if all(run_met(r) for r in runs) else ExitCode.PARTIAL)
