"""``imagefunnel quote``: forecast a job before anything is bought; the quote every ``run`` starts from.

The quote (:mod:`imagefunnel.quoting`) asks the job's own router what it would do with the job's
first request: the providers it would consider (capable, permitted, healthy), their live quotes
priced as the router prices them, and their pass-rate posteriors, learned in the store of earlier
jobs (``--out``) or the prior. The forecast (:mod:`imagefunnel.forecast`) then plays the job over
those beliefs. ``run`` quotes as it starts (:func:`start_quote`): ``confidence`` refuses there, a
saved quote (``--quote``) is checked against what can be quoted now, and the job is held to its
quote when it ends (:mod:`imagefunnel.quote_check`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console

from imagefunnel.cli.runner import QUOTE_FILE, STORE_FILE, open_store
from imagefunnel.errors import NoProviderAvailable, SpecError
from imagefunnel.forecast import JobQuote, chance, refusal, usd
from imagefunnel.providers.base import Provider
from imagefunnel.quote_check import QuoteCheck, QuoteRecord, replanned, wall_counts
from imagefunnel.quoting import DEFAULT_SIMULATIONS, quote_job, store_pass_rates, store_prices, store_score_s
from imagefunnel.routing import PassRateBook, PriceBook
from imagefunnel.spec import JobSpec

if TYPE_CHECKING:
    from imagefunnel.market.server import MarketServer

__all__ = [
    "QUOTE_FILE",
    "learned_pass_rates",
    "learned_price_book",
    "learned_score_s",
    "load_given_quote",
    "market_latencies",
    "print_quote",
    "print_quote_check",
    "quote_spec",
    "start_quote",
]


def learned_pass_rates(out_dir: Path) -> PassRateBook:
    """The book a job run with ``--out out_dir`` would start from; never creates a store."""
    if not (out_dir / STORE_FILE).is_file():
        return PassRateBook()
    store = open_store(out_dir)
    try:
        return store_pass_rates(store.engine)
    finally:
        store.close()


def learned_price_book(out_dir: Path) -> PriceBook | None:
    """The charge/quote drift a job run with ``--out out_dir`` would start from (None: no store);
    never creates a store."""
    if not (out_dir / STORE_FILE).is_file():
        return None
    store = open_store(out_dir)
    try:
        return store_prices(store.engine)
    finally:
        store.close()


def learned_score_s(out_dir: Path, spec: JobSpec) -> float | None:
    """The time ``--out out_dir``'s jobs of this use case took to judge a candidate (None: no store,
    or none yet: the quote uses the use case's default); never creates a store."""
    if not (out_dir / STORE_FILE).is_file():
        return None
    store = open_store(out_dir)
    try:
        return store_score_s(store.engine, spec)
    finally:
        store.close()


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


def quote_spec(
    spec: JobSpec,
    providers: Sequence[Provider],
    *,
    pass_rates: PassRateBook,
    latencies: Mapping[str, float] | None = None,
    confidence: float | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int | None = None,
    score_s: float | None = None,
    prices: PriceBook | None = None,
) -> JobQuote:
    """Quote ``spec`` on ``providers`` (closed afterwards) from ``pass_rates`` (e.g.
    :func:`learned_pass_rates` of a job folder), ``score_s`` (e.g. :func:`learned_score_s`) and
    ``prices`` (e.g. :func:`learned_price_book`); the command line's face of :func:`quote_job`."""
    return asyncio.run(
        quote_job(
            spec,
            providers,
            pass_rates=pass_rates,
            latencies=latencies,
            confidence=confidence,
            simulations=simulations,
            seed=seed,
            score_s=score_s,
            prices=prices,
        )
    )


def load_given_quote(path: Path, spec: JobSpec) -> JobQuote:
    """A quote saved from ``imagefunnel quote --json``, refused unless it quotes this job's terms."""
    try:
        quote = JobQuote.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the quote ({exc.strerror})", field="quote") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(
            f"{path}: not a quote from `imagefunnel quote --json`: {where}: {first['msg']}{more}",
            field="quote",
        ) from None
    asked = {
        "deliver": spec.deliver,
        "budget_usd": spec.budget_usd,
        "deadline_s": spec.deadline_s,
        "candidate_cap": spec.candidate_cap,
    }
    differ = [f"{k} {getattr(quote, k):g} != {v:g}" for k, v in asked.items() if getattr(quote, k) != v]
    if differ:
        raise SpecError(f"{path} quotes another job than this spec: {', '.join(differ)}", field="quote")
    return quote


def start_quote(
    spec: JobSpec,
    providers: Callable[[], Sequence[Provider]],
    *,
    out_dir: Path,
    latencies: Mapping[str, float] | None = None,
    given: JobQuote | None = None,
    skip: bool = False,
) -> QuoteRecord | None:
    """Quote a job as its run starts, before anything is bought, and decide what it is held to.

    The run is held to ``given`` (a quote the user saw earlier) when there is one, else to this
    quote. When providers of ``given``'s plan cannot be quoted now (down, unhealthy) the record says
    the run re-planned and keeps the new quote. A job with a ``confidence`` is refused here, with the
    budget it needs. ``skip`` (``run --no-quote``) quotes only what ``confidence`` needs.
    """
    fresh: JobQuote | None = None
    quoted = spec.confidence is not None or not skip
    if quoted:
        try:
            fresh = quote_spec(
                spec,
                providers(),
                pass_rates=learned_pass_rates(out_dir),
                latencies=latencies,
                score_s=learned_score_s(out_dir, spec),
                prices=learned_price_book(out_dir),
            )
        except NoProviderAvailable:
            if spec.confidence is not None:
                raise
            # Nothing can be quoted now; the run finds out for itself and says why it stopped.
    if fresh is not None and spec.confidence is not None:
        why = refusal(fresh)
        if why is not None:
            raise SpecError(f"confidence: {why}", field="confidence")
    if given is not None:
        gone = replanned(given, fresh) if quoted else []  # not quoted now: nothing to compare
        return QuoteRecord(quote=given, source="given", requote=fresh if gone else None, unavailable=gone)
    return None if fresh is None else QuoteRecord(quote=fresh, source="run")


def print_quote_check(console: Console, check: QuoteCheck) -> None:
    """Quoted vs actual, one line per figure; every broken promise and plan change said plainly."""
    q = check.quote
    source = "the quote given to the run" if check.source == "given" else "the quote made as it started"
    lines = [
        f"quote vs actual ({source}): P(deliver {q.deliver}) {chance(q.p_deliver)}, "
        f"{'delivered all' if check.delivered_all else 'not all delivered'}",
        f"  spend: {usd(check.spend_usd.actual)} (quoted expected {usd(check.spend_usd.quoted_expected)}, "
        f"p95 {usd(check.spend_usd.quoted_p95)})",
        f"  candidates: {check.candidates.actual:.0f} (quoted expected {check.candidates.quoted_expected:.1f}, "
        f"p95 {check.candidates.quoted_p95:.0f})",
        f"  wall time: {check.wall_s.actual:.1f}s (quoted expected {check.wall_s.quoted_expected:.1f}s, "
        f"p95 {check.wall_s.quoted_p95:.1f}s; actual counts {check.wall_note})",
        f"  providers: quoted {', '.join(check.quoted_providers) or 'none'}; "
        f"used {', '.join(check.used_providers) or 'none'}",
    ]
    lines += [f"  ABOVE THE QUOTE: {why}" for why in check.broken]
    label = "PLAN CHANGED" if check.plan_changed else "off the plan"
    lines += [f"  {label}: {note}" for note in check.plan_notes]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


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
        f"(counts {wall_counts(quote)})",
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
