"""``imagefunnel providers``: see each configured provider's state and current price, check a box."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.errors import ProviderError
from imagefunnel.providers.base import GenerationRequest, Provider

providers_app = typer.Typer(help="List, probe and price the configured providers.", no_args_is_help=True)
console = Console()

ProvidersFile = Annotated[
    Path | None, typer.Option("--providers", help="providers YAML (default: the emulated market)")
]
Market = Annotated[str, typer.Option(help="emulated market scenario, when no providers file is given")]
Model = Annotated[str, typer.Option(help="model to ask for")]


@dataclass(frozen=True, slots=True)
class _Offer:
    providers: Sequence[Provider]
    hidden: Sequence[str]  # one "name (serves ..., not MODEL)" per provider left out


def hidden_providers(offer: Mapping[str, set[str]], model: str) -> list[str]:
    """Each provider that does not serve ``model``, with what it serves instead."""
    return [
        f"{name} (serves {', '.join(sorted(models)) or 'no model'}, not {model})"
        for name, models in sorted(offer.items())
        if model not in models
    ]


@contextmanager
def _providers(path: Path | None, market: str, model: str) -> Iterator[_Offer]:
    if path is not None:
        from imagefunnel.providers.config import build_provider, load_providers_file

        yield _Offer([build_provider(cfg) for cfg in load_providers_file(path).providers], ())
        return
    from imagefunnel.cli.demo import market_offer, market_providers
    from imagefunnel.market.server import MarketServer

    with MarketServer(market) as server:
        yield _Offer(market_providers(server, model), hidden_providers(market_offer(server), model))


async def _gather_rows(
    providers: Sequence[Provider], request: GenerationRequest
) -> tuple[list[list[str]], list[bool]]:
    rows = []
    healthy = []
    for provider in providers:
        caps = await provider.capabilities()
        health = await provider.health()
        try:
            quote = await provider.quote(request)
            price = f"${quote.usd:.4f} ({quote.unit_price_usd:.4g}/{quote.unit.value})"
        except ProviderError as exc:
            price = f"[red]{exc}[/]"
        healthy.append(health.ok)
        state = "[green]up[/]" if health.ok else f"[red]down[/] {health.detail}"
        rows.append(
            [provider.name, ", ".join(sorted(caps.models)), state, f"{health.latency_s * 1000:.0f} ms", price]
        )
        await provider.aclose()
    return rows, healthy


def health_exit_code(healthy: Sequence[bool]) -> ExitCode:
    """0 when every provider is up, 1 when some are down, 2 when none is up (or there are none)."""
    if healthy and all(healthy):
        return ExitCode.OK
    return ExitCode.PARTIAL if any(healthy) else ExitCode.FAILED


_COLUMNS = ("provider", "models", "health", "probe", "quote")


def _show(
    offer: _Offer, model: str, width: int, height: int, *, columns: Sequence[str] = _COLUMNS
) -> ExitCode:
    """Print the table; the exit code its health column stands for."""
    providers = offer.providers
    request = GenerationRequest(request_id="quote", model=model, prompt="quote", width=width, height=height)
    import asyncio

    rows, healthy = asyncio.run(_gather_rows(providers, request))
    keep = [i for i, col in enumerate(_COLUMNS) if col in columns]
    table = Table(title=f"providers for {model} at {width}x{height}")
    for i in keep:
        table.add_column(_COLUMNS[i])
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    # Say who is left out and why: an empty or short table otherwise reads as providers being down.
    for line in offer.hidden:
        console.print(f"hidden: {line}", markup=False, highlight=False)
    return health_exit_code(healthy)


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
    """Probe every provider now. Exit code 0: all healthy; 1: some unhealthy; 2: none healthy, or invalid input."""
    with _providers(providers, market, model) as built:
        code = _show(built, model, 512, 512, columns=("provider", "health", "probe"))
    raise typer.Exit(code)


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
    """Verify a ComfyUI server end to end (stats, nodes, websocket, a tiny prompt, history, view).
    Exit code 0: usable; 2: not usable, or invalid input."""
    import asyncio

    from imagefunnel.providers.comfyui import check_server

    report = asyncio.run(check_server(url, workflow=workflow) if workflow else check_server(url))
    for line in report.lines():
        console.print(line, markup=False)
    raise typer.Exit(ExitCode.OK if report.ok else ExitCode.FAILED)
