"""User-facing error lines: one line each, printed verbatim (never through Rich markup)."""

from __future__ import annotations

from rich.console import Console


def one_line(message: str) -> str:
    """Fold a multi-line message into one line, so each error is exactly one line of output."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def print_error(console: Console, message: object) -> None:
    """Print ``error: <message>`` without interpreting brackets as markup or highlighting."""
    console.print(
        f"error: {one_line(str(message))}", markup=False, highlight=False, soft_wrap=True, style="bold red"
    )
