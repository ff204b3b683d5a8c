"""``imagefunnel quote``: forecast a job before anything is bought, and ``confidence``'s guard on ``run``.

The quote asks the job's own router what it would do with the job's first request: the providers it
would consider (capable, permitted, healthy), their live quotes priced as the router prices them,
and their pass-rate posteriors, learned in the store of earlier jobs (``--out``) or the prior. The
forecast (:mod:`imagefunnel.forecast`) then plays the job over those beliefs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.cli.runner import STORE_FILE, open_store
from imagefunnel.errors import NoProviderAvailable, SpecError
from imagefunnel.forecast import JobPlan, JobQuote, ProviderOutlook, chance, forecast, refusal, usd
from imagefunnel.funnel.engine import _reference_bytes
from imagefunnel.funnel.requests import prompt_for, seed_for
from imagefunnel.providers.base import GenerationRequest, Provider
from imagefunnel.routing import NullLedger, PassRate, PassRateBook, RouteContext, Router
from imagefunnel.spec import JobSpec, load_spec
from imagefunnel.store.pass_rates import SqlPassRates

if TYPE_CHECKING:
    from imagefunnel.market.server import MarketServer

__all__ = ["QUOTE_FILE", "market_latencies", "quote_cmd", "quote_spec", "require_confidence"]

QUOTE_FILE = "quote.json"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SIMULATIONS = 2000


class _LoadedRates:
    """Pass rates read once from the store; a quote learns nothing, so nothing is written back."""

    def __init__(self, rates: Sequence[PassRate]) -> None:
        self._rates = list(rates)

    def load_pass_rates(self) -> list[PassRate]:
        return self._rates

    def save_pass_rate(self, rate: PassRate) -> None:
        return None


def learned_pass_rates(out_dir: Path) -> PassRateBook:
    """The book a job run with ``--out out_dir`` would start from; never creates a store."""
    if not (out_dir / STORE_FILE).is_file():
        return PassRateBook()
    store = open_store(out_dir)
    try:
        rates = list(SqlPassRates(store.engine).load_pass_rates())
    finally:
        store.close()
    return PassRateBook(persistence=_LoadedRates(rates))


def market_latencies(market: MarketServer) -> dict[str, float]:
    """Each emulated provider's mean latency in wall seconds, as its scenario states it (what a user
    would measure): queue plus processing for a hosted API, sampler steps for a self-hosted box."""
    pace = market.market.time_factor
    hosted = {
        p.name: pace * (sum(p.queue_s) / 2 + sum(p.processing_s) / 2) for p in market.scenario.providers
    }
    from imagefunnel.cli.demo import box_settings

    boxes = {b.name: pace * box_settings(b).steps * b.seconds_per_step for b in market.scenario.comfyui_boxes}
    return hosted | boxes


async def _outlooks(
    spec: JobSpec, providers: Sequence[Provider], book: PassRateBook, latencies: Mapping[str, float]
) -> list[ProviderOutlook]:
    """What the job's router would weigh for its first request (the same router a job builds)."""
    router = Router(providers, ledger=NullLedger(), pass_rates=book)
    request = GenerationRequest(
        request_id="quote-00000",
        model=spec.model,
        prompt=prompt_for(spec, 0),
        width=spec.size.width,
        height=spec.size.height,
        seed=seed_for(spec, 0),
        reference_images=_reference_bytes(spec),
    )
    ctx = RouteContext(
        job_id="quote",
        wave=1,
        deadline=time.monotonic() + spec.deadline_s,
        permits=spec.providers.permits,
        use_case=spec.use_case,
    )
    try:
        await router.quotes(request, ctx)  # capabilities and live quotes, as a job's first request
        options, _ = router._decide(request, ctx, frozenset())
    finally:
        for provider in providers:
            await provider.aclose()
    if not options:
        raise NoProviderAvailable(f"no provider can take this job now ({spec.model}): nothing to quote")
    learned = {rate.key for rate in book.all()}
    return [
        ProviderOutlook.from_option(
            option,
            time_left_s=spec.deadline_s,
            learned=option.pass_rate.key in learned,
            latency_s=latencies.get(option.provider),
        )
        for option in options
    ]


def quote_spec(
    spec: JobSpec,
    providers: Sequence[Provider],
    *,
    out_dir: Path,
    latencies: Mapping[str, float] | None = None,
    confidence: float | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int | None = None,
) -> JobQuote:
    """Quote ``spec`` on ``providers`` (closed afterwards) with the pass rates learned in ``out_dir``."""
    book = learned_pass_rates(out_dir)
    outlooks = asyncio.run(_outlooks(spec, providers, book, latencies or {}))
    plan = JobPlan(
        deliver=spec.deliver,
        budget_usd=spec.budget_usd,
        deadline_s=spec.deadline_s,
        candidate_cap=spec.candidate_cap,
        concurrency=spec.concurrency,
    )
    return forecast(
        plan,
        outlooks,
        confidence=confidence or spec.confidence or DEFAULT_CONFIDENCE,
        simulations=simulations,
        seed=spec.seed if seed is None else seed,
        prior=book.prior,
    )


def require_confidence(
    spec: JobSpec,
    providers: Callable[[], Sequence[Provider]],
    *,
    out_dir: Path,
    latencies: Mapping[str, float] | None = None,
) -> None:
    """Before a job with a ``confidence`` buys anything: refuse it with the budget it needs, or record
    its quote in ``out_dir/quote.json``. A job without one starts as before."""
    if spec.confidence is None:
        return
    quote = quote_spec(spec, providers(), out_dir=out_dir, latencies=latencies)
    why = refusal(quote)
    if why is not None:
        raise SpecError(f"confidence: {why}", field="confidence")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / QUOTE_FILE).write_text(quote.model_dump_json(indent=2), encoding="utf-8")


def print_quote(console: Console, quote: JobQuote, *, name: str) -> None:
    k = quote.deliver
    lines = [
        f"quote for {name}: deliver {k} within {usd(quote.budget_usd)} and {quote.deadline_s:g}s "
        f"({quote.simulations} simulations, seed {quote.seed}; nothing bought)",
        quote.pass_rates,
        f"P(deliver {k} within budget and deadline): {chance(quote.p_deliver)}",
        f"spend: expected {usd(quote.expected_spend_usd)}, p50 {usd(quote.spend_p50_usd)}, "
        f"p95 {usd(quote.spend_p95_usd)}",
        f"candidates: expected {quote.expected_candidates:.1f}, p95 {quote.candidates_p95:.0f} "
        f"(cap {quote.candidate_cap})",
        f"wall time: expected {quote.expected_wall_s:.1f}s, p95 {quote.wall_p95_s:.1f}s "
        "(provider latency; scoring time and provider queues not modelled)",
        "stops: " + ", ".join(f"{why} {share:.0%}" for why, share in quote.stops.items()),
    ]
    if quote.needed_budget_usd is not None:
        lines.append(
            f"smallest budget for P >= {quote.confidence:g}: {usd(quote.needed_budget_usd)} "
            f"(reaches {chance(quote.p_deliver_at_needed or 0.0)})"
        )
    else:
        lines.append(
            f"no budget reaches P >= {quote.confidence:g}: the deadline and candidate cap allow "
            f"P = {chance(quote.p_deliver_unbounded)}"
        )
    lines.append("providers (the router's order, by expected cost per accepted image):")
    lines += [f"  {p.provider}: {p.share:.0%} of requests; {p.why}" for p in quote.providers]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


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
    from imagefunnel.market.server import MarketServer
    from imagefunnel.providers.config import build_provider, load_providers_file
    from imagefunnel.spec.offer import check_offer

    spec = load_spec(spec_path)
    if providers_path is not None:
        configs = load_providers_file(providers_path).providers
        check_offer(spec, {cfg.name: set(cfg.models) for cfg in configs})
        built = [build_provider(cfg) for cfg in configs]
        quote = quote_spec(
            spec, built, out_dir=out_dir, confidence=confidence, simulations=simulations, seed=seed
        )
        return spec, quote
    with MarketServer(scenario) as market:
        check_offer(spec, market_offer(market))
        quote = quote_spec(
            spec,
            market_providers(market, spec.model),
            out_dir=out_dir,
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
    budget reaching --confidence. Exit code 0: the budget reaches the confidence; 1: it does not."""
    if confidence is not None and not 0 < confidence < 1:
        raise typer.BadParameter("must be between 0 and 1 (exclusive)", param_hint="--confidence")
    job, quote = _quote(spec, providers, market, out, confidence, simulations, seed)
    if as_json:
        typer.echo(quote.model_dump_json(indent=2))
    else:
        print_quote(Console(), quote, name=job.name)
    raise typer.Exit(ExitCode.OK if refusal(quote) is None else ExitCode.PARTIAL)
