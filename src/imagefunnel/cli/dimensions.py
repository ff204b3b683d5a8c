"""``imagefunnel dimensions``: every dimension a scorer can measure, with what it takes to pass."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.use_cases import UseCase

if TYPE_CHECKING:
    from imagefunnel.scoring import DimensionInfo

__all__ = ["dimensions_cmd"]


def _bound(value: float) -> float | None:
    return None if math.isinf(value) else value


def _row(info: DimensionInfo) -> dict[str, object]:
    low, high = info.value_range
    return {
        "name": info.name,
        "tier": info.tier,
        "direction": "higher is better" if info.direction == "higher_is_better" else "lower is better",
        "range": [_bound(low), _bound(high)],  # null: unbounded (JSON has no infinity)
        "unit": info.unit,
        "default_threshold": info.default_threshold,
        "use_cases": sorted(info.use_cases) or ["all"],
        "optional": info.optional,
        "measures": info.description,
    }


def _first_sentence(text: str) -> str:
    """The one line a table has room for; ``--json`` carries the whole description."""
    head, dot, _ = text.partition(". ")
    return head + dot.strip()


def dimensions_cmd(
    use_case: Annotated[
        UseCase | None,
        typer.Option(help="only the dimensions that apply to this use case (default: every one)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List every dimension: tier, direction, range, unit, default threshold and what it measures."""
    from imagefunnel.scoring import default_registry

    names = default_registry.names(use_case=None if use_case is None else use_case.value)
    infos = sorted((default_registry.get(n).info for n in names), key=lambda i: (i.tier, i.name))
    rows = [_row(info) for info in infos]
    console = Console()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    title = f"{len(rows)} dimensions" + ("" if use_case is None else f" for use case {use_case.value}")
    table = Table(title=title, show_lines=False)
    for header in ("dimension", "tier", "direction", "range", "unit", "default", "use cases", "measures"):
        table.add_column(header, overflow="fold")
    for info in infos:
        low, high = info.value_range
        table.add_row(
            info.name,
            str(info.tier),
            "higher is better" if info.direction == "higher_is_better" else "lower is better",
            f"{low:g} to {high:g}",
            info.unit,
            f"{info.default_threshold:g}",
            ", ".join(sorted(info.use_cases)) or "all",
            _first_sentence(info.description) + (" (optional extra)" if info.optional else ""),
        )
    console.print(table, markup=False)
