"""``imagefunnel bench``: benchmarks. Register with ``app.add_typer(bench_app, name="bench")``."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.bench.workflows import bench_workflows_cmd
from imagefunnel.cli.crash_bench import crash_cmd
from imagefunnel.cli.cutout import bench_bg_removal_cmd
from imagefunnel.cli.eval import bench_scoring_cmd
from imagefunnel.cli.quote_bench import quote_bench_cmd
from imagefunnel.cli.scaleout_bench import load_cmd, ray_scaling_cmd

if TYPE_CHECKING:
    from imagefunnel.bench.routing import RoutingReport

bench_app = typer.Typer(
    help="Benchmarks: routing policies against the emulated market.", no_args_is_help=True
)
console = Console()


@bench_app.callback()
def _group() -> None:
    """Benchmarks (each writes its section of docs/benchmarks.md with --write)."""


@bench_app.command("routing")
def routing(
    scenario: Annotated[
        str, typer.Option(help="built-in scenario name or scenario YAML path")
    ] = "seed-market",
    jobs: Annotated[int, typer.Option(min=1, help="jobs in the workload")] = 200,
    deliver: Annotated[int, typer.Option(min=1, help="deliverables (K) per job")] = 60,
    interarrival: Annotated[
        float, typer.Option(min=0.0, help="scenario seconds between job arrivals")
    ] = 36.0,
    deadline: Annotated[
        float, typer.Option(min=1.0, help="each job's deadline, scenario seconds after it arrives")
    ] = 900.0,
    size: Annotated[
        int, typer.Option(min=256, help="image side in pixels (width and height of every request)")
    ] = 1024,
    single: Annotated[
        str | None, typer.Option(help="the `single` policy's provider (default: first)")
    ] = None,
    litellm: Annotated[bool, typer.Option(help="run LiteLLM's strategies as the external baseline")] = True,
    fault_free: Annotated[
        bool,
        typer.Option(help="where the scenario has faults, also run the default policy with them stripped"),
    ] = True,
    e2e_jobs: Annotated[int, typer.Option(min=0, help="jobs of the end-to-end HTTP slice (0: skip)")] = 3,
    calibration_samples: Annotated[int, typer.Option(min=1, help="rendered images per defect label")] = 8,
    decisions: Annotated[
        int, typer.Option(min=0, help="requests for the decision-latency run (0: skip)")
    ] = 20_000,
    workers: Annotated[int, typer.Option(min=1, help="processes running policies in parallel")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the workload and the policies")] = 0,
    write: Annotated[
        Path | None, typer.Option(help="update this Markdown file's section (docs/benchmarks.md)")
    ] = None,
) -> None:
    """Every routing policy and LiteLLM's strategies side by side on one scenario (virtual time)."""
    from imagefunnel.bench.e2e import run_e2e_slice
    from imagefunnel.bench.report import markdown, targets, write_section
    from imagefunnel.bench.routing import run_routing_bench
    from imagefunnel.bench.workload import Workload
    from imagefunnel.market.scenario import load_scenario

    market = load_scenario(scenario)
    workload = Workload(
        jobs=jobs,
        deliver=deliver,
        interarrival_s=interarrival,
        deadline_s=deadline,
        model="flux-dev",
        width=size,
        height=size,
        seed=seed,
    )
    report = run_routing_bench(
        market,
        workload,
        single_provider=single,
        litellm=litellm,
        calibration_samples=calibration_samples,
        decisions_in_flight=1000 if decisions else 0,
        decisions=decisions,
        workers=workers,
        seed=seed,
        fault_free=fault_free,
        progress=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    if e2e_jobs:
        console.print(f"[dim]end-to-end slice over HTTP: {e2e_jobs} jobs × {min(deliver, 10)} per policy[/]")
        report = run_e2e_slice(report, market, jobs=e2e_jobs, deliver=min(deliver, 10), seed=seed)
    report = dataclasses.replace(
        report, command=("imagefunnel bench routing " + shlex.join(sys.argv[3:])).strip()
    )
    _print(report)
    for target in targets(report):
        mark = "[green]met[/]" if target.met else "[red]missed[/]"
        console.print(f"{target.what}: {target.measured_text} (target {target.limit}) {mark}")
    if write is not None:
        write_section(write, markdown(report), scenario=report.scenario)
        console.print(f"wrote {write}")


def _print(report: RoutingReport) -> None:
    from imagefunnel.bench.report import signed_pct

    table = Table(title=f"routing on {report.scenario}")
    for column in (
        "policy",
        "$/delivered",
        "× single",
        "× oracle",
        "× bound",
        "ledger±%",
        "failed %",
        "p50 s",
        "p99 s",
        "cand/deliv",
        "early",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in (*report.policies, *report.litellm):
        table.add_row(
            r.name,
            f"{r.cost_per_delivered:.4f}",
            f"{report.ratio(r.name, 'single'):.3f}",
            f"{report.ratio(r.name, 'oracle'):.3f}",
            f"{report.to_bound(r.name):.3f}",
            signed_pct(r.ledger_vs_bill_pct),
            f"{r.failed_pct:.2f}",
            f"{r.job_seconds(50):.0f}",
            f"{r.job_seconds(99):.0f}",
            f"{r.candidates_per_delivered:.2f}",
            f"{r.before_retry_after}",
        )
    console.print(table)
    d = report.dispersion
    console.print(
        f"dispersion: {report.single_provider} ${d.single_usd_per_mp:.4f}/MP, "
        f"cheapest at any moment ${d.cheapest_usd_per_mp:.4f}/MP on average"
    )
    console.print(
        f"lower bound: ${report.lower_bound_usd:.4f} per delivered image "
        f"(price floor without capacity or timing: ${report.price_floor_usd:.4f})"
    )
    if report.decisions is not None:
        dl = report.decisions
        console.print(
            f"decision latency at {dl.max_in_flight} in flight: p50 {dl.p50_us:.0f} µs, p99 {dl.p99_us:.0f} µs"
        )


bench_app.command("scoring")(bench_scoring_cmd)  # scoring throughput and dev-set quality (cli/eval.py)
bench_app.command("bg-removal")(bench_bg_removal_cmd)  # self-hosted vs API vs routed (cli/cutout.py)

bench_app.command("load")(load_cmd)  # workers sharing one PostgreSQL under load (cli/scaleout_bench.py)
bench_app.command("ray-scaling")(ray_scaling_cmd)  # scoring throughput on Ray next to threads
bench_app.command("crash")(crash_cmd)  # kill -9 and resume, ledger vs billing (cli/crash_bench.py)
bench_app.command("quote")(quote_bench_cmd)  # forecast vs simulated jobs (cli/quote_bench.py)
bench_app.command("workflows")(bench_workflows_cmd)  # raw ComfyUI vs library vs HTTP (bench/workflows.py)
