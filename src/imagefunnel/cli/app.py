"""The ``imagefunnel`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imagefunnel.cli.bench import bench_app
from imagefunnel.cli.cutout import cutout_cmd
from imagefunnel.cli.dimensions import dimensions_cmd
from imagefunnel.cli.errors import print_error
from imagefunnel.cli.eval import calibrate_cmd, devset_cmd, eval_cmd
from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.cli.jobs_cmd import jobs_app
from imagefunnel.cli.market_serve import market_app
from imagefunnel.cli.providers import providers_app
from imagefunnel.cli.quote_cmd import quote_cmd
from imagefunnel.cli.serve import bench_service_cmd, evaluations_app, keys_app, serve_cmd
from imagefunnel.cli.uploads_cmd import uploads_app
from imagefunnel.cli.worker import submit_cmd, worker_cmd
from imagefunnel.cli.workflows import workflows_app
from imagefunnel.errors import ImageFunnelError

if TYPE_CHECKING:
    from imagefunnel.funnel import JobResult

app = typer.Typer(
    name="imagefunnel",
    help="Generate more than you need, score every candidate, deliver the best K at the least cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(providers_app, name="providers")
app.add_typer(bench_app, name="bench")
app.add_typer(workflows_app, name="workflows")
app.add_typer(jobs_app, name="jobs")
app.command("devset")(devset_cmd)
app.command("eval")(eval_cmd)
app.command("calibrate")(calibrate_cmd)
app.command("cutout")(cutout_cmd)
app.command("dimensions")(dimensions_cmd)
app.command("quote")(quote_cmd)
# Scale-out: workers sharing one store, the jobs they run, one emulated market for all of them.
app.command("worker")(worker_cmd)
app.command("submit")(submit_cmd)
app.add_typer(market_app, name="market")
app.command("serve")(serve_cmd)
app.add_typer(keys_app, name="keys")
app.add_typer(evaluations_app, name="evaluations")
app.add_typer(uploads_app, name="uploads")
bench_app.command("service")(bench_service_cmd)
console = Console()
err_console = Console(stderr=True)

OutDir = Annotated[
    Path, typer.Option("--out", help="folder for report.html, results.json, the store and images")
]


_JOB_EXITS = (
    "Exit code 0: all K delivered; 1: partial; 2: failed or invalid input; 130: interrupted (resumable)."
)


def _finish_job(run: Callable[[], JobResult]) -> None:
    """Run a job command and exit with the code its outcome stands for (see ``ExitCode``)."""
    from imagefunnel.cli.runner import JobInterrupted
    from imagefunnel.cli.summary import job_exit_code

    try:
        result = run()
    except JobInterrupted as exc:
        console.print(
            f"interrupted: job {exc.job_id} stopped; what was bought is kept. resume with: {exc.resume_command}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(job_exit_code(result))


@app.command(
    help=f"Run a headshot job end to end against the embedded emulated provider market (no keys, no servers). Each run starts from a fresh store in OUT unless --keep-state. {_JOB_EXITS}"
)
def demo(
    out: OutDir = Path("imagefunnel-out"),
    deliver: Annotated[
        int | None, typer.Option(help="K: images to deliver (default from the demo spec)")
    ] = None,
    scenario: Annotated[str, typer.Option(help="emulated market scenario")] = "demo",
    seed: Annotated[int | None, typer.Option(help="seed of the job (default from the demo spec)")] = None,
    keep_state: Annotated[
        bool,
        typer.Option(
            "--keep-state",
            help="keep the previous demo's store and blobs in OUT (learned pass rates then carry over)",
        ),
    ] = False,
) -> None:
    from imagefunnel.cli.demo import run_demo

    _finish_job(
        lambda: run_demo(
            console, out_dir=out, deliver=deliver, scenario=scenario, seed=seed, keep_state=keep_state
        )
    )


@app.command(
    help=f"Run the job in SPEC against configured providers, or against the emulated market. {_JOB_EXITS}"
)
def run(
    spec: Annotated[Path, typer.Argument(help="job spec YAML")],
    providers: Annotated[
        Path | None, typer.Option(help="providers YAML (real endpoints; keys from env vars)")
    ] = None,
    market: Annotated[
        str | None,
        typer.Option(
            help="emulated market scenario, used when --providers is not given "
            "(default: demo; bg-removal for a background-removal job)"
        ),
    ] = None,
    out: OutDir = Path("imagefunnel-out"),
    quote: Annotated[
        Path | None,
        typer.Option(
            "--quote",
            help="a quote saved from `imagefunnel quote --json`: the run is held to it, and re-plans "
            "(and says so) if its providers are down when the run starts",
        ),
    ] = None,
    no_quote: Annotated[
        bool,
        typer.Option(
            "--no-quote", help="do not quote the job as it starts (a spec's confidence still needs one)"
        ),
    ] = False,
) -> None:
    from imagefunnel.cli.demo import run_spec

    _finish_job(
        lambda: run_spec(
            console,
            spec_path=spec,
            providers_path=providers,
            scenario=market,
            out_dir=out,
            quote_path=quote,
            quote=not no_quote,
        )
    )


@app.command(
    help=f"Resume a job that stopped mid-way (Ctrl-C, crash, kill): what was bought is kept, nothing is bought twice. {_JOB_EXITS}"
)
def resume(
    job_id: Annotated[
        str,
        typer.Argument(help="the job to carry on (printed when it started; in results.json and the store)"),
    ],
    out: OutDir = Path("imagefunnel-out"),
    providers: Annotated[
        Path | None, typer.Option(help="providers YAML (real endpoints; keys from env vars)")
    ] = None,
    market: Annotated[
        str | None,
        typer.Option(
            help="emulated market scenario, used when --providers is not given "
            "(default: demo; bg-removal for a background-removal job)"
        ),
    ] = None,
) -> None:
    from imagefunnel.cli.resume import resume_job

    _finish_job(
        lambda: resume_job(console, job_id=job_id, out_dir=out, providers_path=providers, scenario=market)
    )


@app.command()
def score(
    images: Annotated[
        list[Path], typer.Argument(help="image files, or folders whose images are scored (sorted)")
    ],
    spec: Annotated[Path | None, typer.Option(help="job spec whose thresholds and rules apply")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    use_case: Annotated[
        str | None,
        typer.Option(
            help="use case whose tier-2 dimensions apply: headshot, product, background_removal, "
            "ad_creative (default: the spec's; without either only the generic checks run)"
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="also score images in subfolders of folders given")
    ] = False,
) -> None:
    """Score images you bring and print every dimension's verdict.

    A folder's files that are not images are skipped with a note. A file that cannot be read is
    reported and the others are still scored. Exit code: 0 all passed, 1 some failed, 2 invalid
    input (a file could not be read, nothing was left to score, or a bad spec or use case).
    """
    from imagefunnel.cli.score import score_images

    code = score_images(
        console,
        images=images,
        spec_path=spec,
        as_json=json_out,
        use_case=use_case,
        recursive=recursive,
        err_console=err_console,
    )
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except ImageFunnelError as exc:
        print_error(err_console, exc)
        sys.exit(ExitCode.FAILED)
