"""``imagefunnel market serve``: one emulated market for many worker processes.

Every worker given the providers file it writes buys from the same market, so the market's billing
log (``GET {url}/_market/billing``) is the providers' side of the bill for all of them together.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from imagefunnel.market.server import MarketServer
    from imagefunnel.providers.config import ProvidersFile

__all__ = ["MARKET_KEY_ENV", "market_app", "providers_file"]

# The emulated market checks that a key is sent, not which one; workers read it from this variable.
MARKET_KEY_ENV = "IMAGEFUNNEL_MARKET_KEY"

market_app = typer.Typer(
    help="The emulated provider market, served for other processes.", no_args_is_help=True
)
console = Console()


@market_app.callback()
def _group() -> None:
    """The emulated provider market (loopback servers speaking each provider's protocol)."""


def providers_file(market: MarketServer, model: str) -> ProvidersFile:
    """A providers file for every provider and self-hosted box of ``market`` that serves ``model``."""
    from imagefunnel.cli.demo import box_settings, market_provider_config
    from imagefunnel.providers.config import ProviderConfig, ProvidersFile

    hosted = [
        market_provider_config(market, profile, model).model_copy(update={"api_key_env": MARKET_KEY_ENV})
        for profile in market.scenario.providers
        if model in profile.models
    ]
    boxes = [
        ProviderConfig(
            name=box.name,
            protocol="comfyui",
            base_url=market.base_url(box.name),
            models=[model],
            timeout_s=30.0,
            poll_interval_s=0.05,
            comfyui=box_settings(box),
        )
        for box in market.scenario.comfyui_boxes
        if model in box.models
    ]
    return ProvidersFile(providers=[*hosted, *boxes])


@market_app.command("serve")
def serve(
    providers_out: Annotated[Path, typer.Option(help="write the providers YAML for workers here")],
    scenario: Annotated[str, typer.Option(help="built-in scenario name or scenario YAML path")] = "demo",
    model: Annotated[str, typer.Option(help="the model the providers file lists")] = "fal-ai/flux/dev",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="port of the hosted providers (0: any free)")
    ] = 0,
    time_factor: Annotated[
        float | None,
        typer.Option(min=0.0001, help="wall seconds per scenario second (default: the scenario's)"),
    ] = None,
) -> None:
    """Serve the market until SIGTERM/SIGINT; workers use --providers with the file it writes."""
    import yaml

    from imagefunnel.market.server import MarketServer

    with MarketServer(scenario, port=port, time_factor=time_factor) as market:
        document = providers_file(market, model).model_dump(mode="json", exclude_defaults=True)
        providers_out.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        console.print(
            f"market '{market.scenario.name}' at {market.url} ({len(document['providers'])} providers of "
            f"{model})\nproviders file: {providers_out} (workers need {MARKET_KEY_ENV} set, to any value)\n"
            f"billing log: {market.url}/_market/billing",
            highlight=False,
        )
        _wait_for_stop_signal()
    console.print("market stopped")


def _wait_for_stop_signal() -> None:
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stopped.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
