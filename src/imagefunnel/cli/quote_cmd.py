"""``imagefunnel quote``: the command. What it runs lives in ``cli/quote.py`` and is imported when the
command runs, so that listing the commands (``--help``) does not import the router and the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.quote_defaults import DEFAULT_SIMULATIONS

if TYPE_CHECKING:
    from imagefunnel.forecast import JobQuote
    from imagefunnel.spec import JobSpec

__all__ = ["quote_cmd"]


def _quote(
    spec_path: Path,
    providers_path: Path | None,
    scenario: str,
    out_dir: Path,
    confidence: float | None,
    simulations: int,
    seed: int | None,
) -> tuple[JobSpec, JobQuote]:
    from imagefunnel.cli.demo import market_offer, market_providers
    from imagefunnel.cli.quote import (
        learned_pass_rates,
        learned_price_book,
        learned_score_s,
        market_latencies,
        quote_spec,
    )
    from imagefunnel.market.server import MarketServer
    from imagefunnel.providers.config import build_provider, load_providers_file
    from imagefunnel.spec import load_spec
    from imagefunnel.spec.offer import check_offer

    spec = load_spec(spec_path)
    if providers_path is not None:
        configs = load_providers_file(providers_path).providers
        check_offer(spec, {cfg.name: set(cfg.models) for cfg in configs})
        built = [build_provider(cfg) for cfg in configs]
        quote = quote_spec(
            spec,
            built,
            pass_rates=learned_pass_rates(out_dir),
            score_s=learned_score_s(out_dir, spec),
            prices=learned_price_book(out_dir),
            confidence=confidence,
            simulations=simulations,
            seed=seed,
        )
        return spec, quote
    with MarketServer(scenario) as market:
        check_offer(spec, market_offer(market))
        quote = quote_spec(
            spec,
            market_providers(market, spec.model),
            pass_rates=learned_pass_rates(out_dir),
            score_s=learned_score_s(out_dir, spec),
            prices=learned_price_book(out_dir),
            latencies=market_latencies(market),
            confidence=confidence,
            simulations=simulations,
            seed=seed,
        )
    return spec, quote


def quote_cmd(
    spec: Annotated[Path, typer.Argument(help="job spec YAML")],
    providers: Annotated[
        Path | None, typer.Option(help="providers YAML (real endpoints; quotes only, nothing is bought)")
    ] = None,
    market: Annotated[
        str, typer.Option(help="emulated market scenario, used when --providers is not given")
    ] = "demo",
    out: Annotated[
        Path, typer.Option("--out", help="folder of earlier jobs' store, whose learned pass rates are used")
    ] = Path("imagefunnel-out"),
    confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="the P(deliver) to find the smallest budget for (default: the spec's, else 0.95)",
        ),
    ] = None,
    simulations: Annotated[
        int, typer.Option(min=1, max=100_000, help="Monte Carlo runs")
    ] = DEFAULT_SIMULATIONS,
    seed: Annotated[int | None, typer.Option(help="seed of the simulation (default: the spec's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the quote as JSON")] = False,
) -> None:
    """Forecast a job without buying anything: spend (expected, p50, p95), candidates, wall time,
    P(deliver all K within budget and deadline), the providers it would use and why, and the smallest
    budget reaching --confidence. Save --json to a file and give it to `run --quote` to hold the run
    to it. Exit code 0: the budget reaches the confidence; 1: it does not."""
    from imagefunnel.cli.quote import print_quote
    from imagefunnel.forecast import refusal

    if confidence is not None and not 0 < confidence < 1:
        raise typer.BadParameter("must be between 0 and 1 (exclusive)", param_hint="--confidence")
    job, quote = _quote(spec, providers, market, out, confidence, simulations, seed)
    if as_json:
        typer.echo(quote.model_dump_json(indent=2))
    else:
        print_quote(Console(), quote, name=job.name)
    raise typer.Exit(ExitCode.OK if refusal(quote) is None else ExitCode.PARTIAL)
