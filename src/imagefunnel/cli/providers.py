"""``imagefunnel providers``: see each configured provider's state and current price, check a box."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.errors import ProviderError
from imagefunnel.providers.base import GenerationRequest, Provider

providers_app = typer.Typer(help="List, probe and price the configured providers.", no_args_is_help=True)
console = Console()

ProvidersFile = Annotated[
    Path | None, typer.Option("--providers", help="providers YAML (default: the emulated market)")
]
Market = Annotated[str, typer.Option(help="emulated market scenario, when no providers file is given")]
Model = Annotated[str, typer.Option(help="model to ask for")]


@contextmanager
def _providers(path: Path | None, market: str, model: str) -> Iterator[Sequence[Provider]]:
    if path is not None:
        from imagefunnel.providers.config import build_provider, load_providers_file

        yield [build_provider(cfg) for cfg in load_providers_file(path).providers]
        return
    from imagefunnel.cli.demo import market_providers
    from imagefunnel.market.server import MarketServer

    with MarketServer(market) as server:
        yield market_providers(server, model)


async def _gather_rows(providers: Sequence[Provider], request: GenerationRequest) -> list[list[str]]:
    rows = []
    for provider in providers:
        caps = await provider.capabilities()
        health = await provider.health()
        try:
            quote = await provider.quote(request)
            price = f"${quote.usd:.4f} ({quote.unit_price_usd:.4g}/{quote.unit.value})"
        except ProviderError as exc:
            price = f"[red]{exc}[/]"
        state = "[green]up[/]" if health.ok else f"[red]down[/] {health.detail}"
        rows.append(
            [provider.name, ", ".join(sorted(caps.models)), state, f"{health.latency_s * 1000:.0f} ms", price]
        )
        await provider.aclose()
    return rows


_COLUMNS = ("provider", "models", "health", "probe", "quote")


def _show(
    providers: Sequence[Provider], model: str, width: int, height: int, *, columns: Sequence[str] = _COLUMNS
) -> None:
    request = GenerationRequest(request_id="quote", model=model, prompt="quote", width=width, height=height)
    rows = asyncio.run(_gather_rows(providers, request))
    keep = [i for i, col in enumerate(_COLUMNS) if col in columns]
    table = Table(title=f"providers for {model} at {width}x{height}")
    for i in keep:
        table.add_column(_COLUMNS[i])
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)


@providers_app.command("list")
def list_providers(
    providers: ProvidersFile = None, market: Market = "demo", model: Model = "fal-ai/flux/dev"
) -> None:
    """Each provider with its models, health and current quote for one 512x512 image."""
    with _providers(providers, market, model) as built:
        _show(built, model, 512, 512)


@providers_app.command("health")
def health(
    providers: ProvidersFile = None, market: Market = "demo", model: Model = "fal-ai/flux/dev"
) -> None:
    """Probe every provider now."""
    with _providers(providers, market, model) as built:
        _show(built, model, 512, 512, columns=("provider", "health", "probe"))


@providers_app.command("quote")
def quote(
    providers: ProvidersFile = None,
    market: Market = "demo",
    model: Model = "fal-ai/flux/dev",
    width: Annotated[int, typer.Option(min=64, max=4096)] = 1024,
    height: Annotated[int, typer.Option(min=64, max=4096)] = 1024,
) -> None:
    """What each provider would charge right now for one image of WIDTHxHEIGHT."""
    with _providers(providers, market, model) as built:
        _show(built, model, width, height, columns=("provider", "quote"))


@providers_app.command("check")
def check(
    url: Annotated[str, typer.Argument(help="ComfyUI server, e.g. http://gpu-box-1:8188")],
    workflow: Annotated[Path | None, typer.Option(help="API-format workflow JSON to run")] = None,
) -> None:
    """Verify a ComfyUI server end to end (stats, nodes, websocket, a tiny prompt, history, view)."""
    from imagefunnel.providers.comfyui import check_server

    report = asyncio.run(check_server(url, workflow=workflow) if workflow else check_server(url))
    for line in report.lines():
        console.print(line, markup=False)
    raise typer.Exit(0 if report.ok else 2)
