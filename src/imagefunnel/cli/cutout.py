"""``imagefunnel cutout`` and ``imagefunnel bench bg-removal``: background removal from the command line."""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.errors import SpecError

__all__ = ["bench_bg_removal_cmd", "cutout_cmd"]

console = Console()
_MODES = ("routed", "self-hosted", "api")


def _market_photos() -> list[Path]:
    import imagefunnel.market

    folder = Path(imagefunnel.market.__file__).parent / "assets" / "portraits"
    return sorted(folder.glob("*.jpg"))


def cutout_cmd(
    photos: Annotated[list[Path], typer.Argument(help="photos to cut out (JPEG, PNG, WebP)")],
    out: Annotated[Path, typer.Option(help="folder for the cutouts (NAME.png) and the store")] = Path(
        "cutouts"
    ),
    mode: Annotated[str, typer.Option(help="routed | self-hosted | api")] = "routed",
    usd_per_hour: Annotated[float, typer.Option(min=0.0, help="price of the self-hosted machine")] = 0.40,
    concurrency: Annotated[int, typer.Option(min=1, help="photos processed at a time")] = 4,
    providers: Annotated[
        Path | None, typer.Option(help="providers YAML with real cutout APIs (protocol removebg)")
    ] = None,
) -> None:
    """Remove the background of each photo: self-hosted model and emulated APIs, routed by cost per
    accepted cutout; every cutout is scored on its matte before it is written."""
    from imagefunnel.bench.bg_removal import _providers
    from imagefunnel.cutouts import run_cutouts
    from imagefunnel.market.server import MarketServer
    from imagefunnel.providers.base import Provider
    from imagefunnel.providers.config import build_provider, load_providers_file
    from imagefunnel.providers.segmentation import local_cutout_provider
    from imagefunnel.routing import Router
    from imagefunnel.store import BlobStore, Store

    if mode not in _MODES:
        raise SpecError(f"unknown mode {mode!r}; choose one of {', '.join(_MODES)}")
    missing = [str(photo) for photo in photos if not photo.is_file()]
    if missing:
        raise SpecError(f"no such photo: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{out / 'imagefunnel.db'}")
    blobs = BlobStore(out / "blobs")
    local = local_cutout_provider(
        usd_per_hour=usd_per_hour, serve_cold=mode != "routed", max_queue=concurrency
    )
    with contextlib.ExitStack() as stack:
        if providers is not None:  # real APIs; the self-hosted model still runs here
            apis = [build_provider(c) for c in load_providers_file(providers).providers]
            chosen: list[Provider] = [local] if mode == "self-hosted" else apis
            if mode == "routed":
                chosen = [local, *apis]
        else:
            chosen = _providers(mode, stack.enter_context(MarketServer("bg-removal")), local)

        async def run() -> list:  # type: ignore[type-arg]
            try:
                return await run_cutouts(
                    photos,
                    chosen,
                    store=store,
                    blobs=blobs,
                    concurrency=concurrency,
                    router=Router(chosen, ledger=store),
                )
            finally:
                for provider in chosen:
                    await provider.aclose()

        import asyncio

        outcomes = asyncio.run(run())
    store.close()
    table = Table(title=f"cutouts ({mode})")
    for column in ("photo", "status", "by", "$ spent", "s", "written"):
        table.add_column(column)
    for outcome in outcomes:
        written = ""
        if outcome.image is not None:
            target = out / f"{outcome.source.stem}.png"
            target.write_bytes(outcome.image)
            written = str(target)
        table.add_row(
            outcome.source.name,
            outcome.status,
            outcome.provider or "–",
            f"{outcome.spent_usd:.5f}",
            f"{outcome.seconds:.1f}",
            written or outcome.reason,
        )
    console.print(table)
    delivered = sum(o.status == "delivered" for o in outcomes)
    spent = sum(o.spent_usd for o in outcomes)
    per = f"${spent / delivered:.5f} per delivered cutout" if delivered else "nothing delivered"
    console.print(f"{delivered}/{len(outcomes)} delivered, ${spent:.4f} spent, {per}")


def bench_bg_removal_cmd(
    photos: Annotated[
        list[Path] | None, typer.Argument(help="photos (default: the market's ten portraits)")
    ] = None,
    repeats: Annotated[int, typer.Option(min=1, help="jobs per photo and mode")] = 3,
    concurrency: Annotated[int, typer.Option(min=1, help="jobs at a time")] = 4,
    usd_per_hour: Annotated[float, typer.Option(min=0.0, help="price of the self-hosted machine")] = 0.40,
    boot_s: Annotated[float, typer.Option(min=0.0, help="modelled boot of a cold worker, seconds")] = 2.0,
    write: Annotated[Path | None, typer.Option(help="update this Markdown file's section")] = None,
) -> None:
    """Cost per delivered cutout and throughput: self-hosted only vs API only vs routed, in one run."""
    import dataclasses

    from imagefunnel.bench.bg_removal import markdown, run_bg_removal_bench, write_bg_section

    chosen = photos or _market_photos()
    report = run_bg_removal_bench(
        chosen,
        repeats=repeats,
        concurrency=concurrency,
        usd_per_hour=usd_per_hour,
        boot_s=boot_s,
        progress=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    command = ("imagefunnel bench bg-removal " + shlex.join(sys.argv[3:])).strip()
    report = dataclasses.replace(report, command=command)
    table = Table(title="background removal")
    for column in ("mode", "delivered", "$/delivered", "cutouts/min", "p95 s", "garbage delivered"):
        table.add_column(column)
    for m in report.modes:
        table.add_row(
            m.mode,
            f"{m.delivered}/{m.jobs}",
            f"{m.cost_per_delivered:.5f}",
            f"{m.throughput_per_min:.1f}",
            f"{m.percentile(95):.1f}",
            str(m.garbage_delivered),
        )
    console.print(table)
    if write is not None:
        write_bg_section(write, markdown(report))
        console.print(f"wrote {write}")
