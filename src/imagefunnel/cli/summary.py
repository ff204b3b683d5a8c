"""The printed summary of a finished job."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.funnel import JobResult

_EXIT_CODES = {"delivered": ExitCode.OK, "partial": ExitCode.PARTIAL}


def job_exit_code(result: JobResult) -> ExitCode:
    """0 when all K were delivered, 1 for a partial delivery, 2 for a job that delivered nothing."""
    return _EXIT_CODES.get(result.status, ExitCode.FAILED)


def delivered_line(result: JobResult) -> str:
    """``delivered 12/12``, or ``passed 15, delivered 12/12`` when more passed than were asked for."""
    delivered = f"delivered {result.delivered}/{result.asked}"
    if result.candidates_passed > result.delivered:
        return f"passed {result.candidates_passed}, {delivered}"
    return delivered


def print_summary(console: Console, result: JobResult, *, wall_s: float) -> None:
    colour = {"delivered": "green", "partial": "yellow"}.get(result.status, "red")
    console.print(f"[bold {colour}]{result.status.upper()}[/] {result.stop_reason}")
    cpd = f"${result.cost_per_delivered_usd:.4f}" if result.cost_per_delivered_usd is not None else "n/a"
    console.print(
        f"{delivered_line(result)} · candidates generated {result.candidates_generated} · "
        f"pass rate {result.pass_rate:.0%} · spent ${result.spent_usd:.4f} · cost per delivered image {cpd} · "
        f"failed attempts {result.failed_attempts} · wall {wall_s:.1f}s"
    )
    table = Table(title="by provider")
    for col in (
        "provider",
        "attempts",
        "failed",
        "candidates",
        "passed",
        "pass rate",
        "charged $",
        "$ / passed",
    ):
        table.add_column(col, justify="left" if col == "provider" else "right")
    for p in result.providers:
        per_passed = f"{p.charged_usd / p.passed:.4f}" if p.passed else "—"
        table.add_row(
            p.provider,
            str(p.attempts),
            str(p.failed_attempts),
            str(p.candidates),
            str(p.passed),
            f"{p.pass_rate:.0%}",
            f"{p.charged_usd:.4f}",
            per_passed,
        )
    console.print(table)
