"""Quote a job: what its router would weigh for its first request, played out by the forecast.

One code path for every caller: ``imagefunnel quote``, the quote every ``imagefunnel run`` records
before it buys anything, and the service's ``POST /v1/jobs/quote``. The caller brings the providers
(fresh adapters, closed here) and the pass rates the job would start from (a :class:`PassRateBook`)
and the charge/quote drift its router would start from (a ``PriceBook``, :func:`store_prices`);
a quote learns nothing, so nothing is written back. Nothing is bought: the router only asks each
provider for a price, as a job's first request does. The funnel scores each candidate inside its
request's slot, so the quote's clock adds a scoring time per candidate: the caller's (what its
store measured, :func:`store_score_s`) or the use case's stated default (:data:`DEFAULT_SCORE_S`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy.engine import Engine

from imagefunnel.errors import NoProviderAvailable
from imagefunnel.forecast import JobPlan, JobQuote, ProviderOutlook, forecast, price_rises_only, price_risk
from imagefunnel.funnel.requests import prompt_for, reference_images, seed_for
from imagefunnel.providers.base import GenerationRequest, Provider
from imagefunnel.quote_defaults import DEFAULT_CONFIDENCE, DEFAULT_SIMULATIONS
from imagefunnel.routing import NullLedger, PassRate, PassRateBook, PriceBook, RouteContext, Router
from imagefunnel.spec import JobSpec, UseCase
from imagefunnel.store.pass_rates import SqlPassRates
from imagefunnel.store.price_drift import learned_prices
from imagefunnel.store.scoring_times import scoring_seconds

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_SCORE_S",
    "DEFAULT_SIMULATIONS",
    "frozen_book",
    "quote_job",
    "store_pass_rates",
    "store_prices",
    "store_score_s",
]

# Seconds from a 1 MP candidate's arrival to its verdict, one candidate at a time, as the funnel's
# cascade (``score_all`` off, default dimensions) took on the emulated market's images on two shared
# cores: generic 0.15, headshot 0.46, product 0.23, ad_creative 0.27 (median of a 6-image job each).
# Background removal was not measured: the largest of the others. Candidates arriving together wait
# for each other (eight at once took 2.5-3x as long); a store's own measurement counts that.
DEFAULT_SCORE_S: Mapping[UseCase, float] = {
    UseCase.GENERIC: 0.15,
    UseCase.HEADSHOT: 0.45,
    UseCase.PRODUCT: 0.25,
    UseCase.AD_CREATIVE: 0.25,
    UseCase.BACKGROUND_REMOVAL: 0.3,
}


class _LoadedRates:
    """Pass rates read once; a quote learns nothing, so nothing is written back."""

    def __init__(self, rates: Iterable[PassRate]) -> None:
        self._rates = list(rates)

    def load_pass_rates(self) -> list[PassRate]:
        return self._rates

    def save_pass_rate(self, rate: PassRate) -> None:
        return None


def frozen_book(rates: Iterable[PassRate]) -> PassRateBook:
    """A book that starts from ``rates`` and never writes back."""
    return PassRateBook(persistence=_LoadedRates(rates))


def store_pass_rates(engine: Engine) -> PassRateBook:
    """The pass rates a job on this store would start from, read once (nothing is written back)."""
    return frozen_book(SqlPassRates(engine).load_pass_rates())


def store_prices(engine: Engine) -> PriceBook:
    """The charge/quote drift a job on this store would start from (its router's price book)."""
    return learned_prices(engine)


def store_score_s(engine: Engine, spec: JobSpec) -> float | None:
    """The time this store's ``spec.use_case`` jobs took to judge a candidate (None: none yet)."""
    return scoring_seconds(engine, spec.use_case.value)


async def _outlooks(
    spec: JobSpec,
    providers: Sequence[Provider],
    book: PassRateBook,
    latencies: Mapping[str, float],
    prices: PriceBook | None,
) -> list[ProviderOutlook]:
    """What the job's router would weigh for its first request (the same router a job builds),
    each provider with the slots that router counts on (:meth:`Router.slots`) and the price risk of
    its adapter (:func:`~imagefunnel.forecast.price_risk`)."""
    router = Router(providers, ledger=NullLedger(), pass_rates=book, prices=prices)
    request = GenerationRequest(
        request_id="quote-00000",
        model=spec.model,
        prompt=prompt_for(spec, 0),
        width=spec.size.width,
        height=spec.size.height,
        seed=seed_for(spec, 0),
        reference_images=reference_images(spec),
    )
    ctx = RouteContext(
        job_id="quote",
        wave=1,
        deadline=time.monotonic() + spec.deadline_s,
        permits=spec.providers.permits,
        use_case=spec.use_case,
    )
    try:
        # Capabilities, live quotes and queue depths, then the ranking, as for a job's first request.
        options = (await router.options(request, ctx)).ranked
    finally:
        for provider in providers:
            await provider.aclose()
    if not options:
        raise NoProviderAvailable(f"no provider can take this job now ({spec.model}): nothing to quote")
    learned = {rate.key for rate in book.all()}
    by_name = {provider.name: provider for provider in providers}
    return [
        ProviderOutlook.from_option(
            option,
            time_left_s=spec.deadline_s,
            learned=option.pass_rate.key in learned,
            latency_s=latencies.get(option.provider),
            slots=router.slots(option.provider),
            price_sigma=price_risk(by_name.get(option.provider)),
            price_rises_only=price_rises_only(router.prices, option.provider, option.model),
        )
        for option in options
    ]


async def quote_job(
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
    """Quote ``spec`` on ``providers`` (closed afterwards) starting from ``pass_rates`` and the
    charge/quote drift of ``prices`` (:func:`store_prices`; None: none learned, list prices).

    ``latencies`` overrides a provider's expected latency for the forecast's clock (what a market
    scenario states); ``score_s`` the seconds to judge a candidate (default: the use case's
    :data:`DEFAULT_SCORE_S`). The simulation runs in a worker thread, so an event loop stays responsive.
    """
    outlooks = await _outlooks(spec, providers, pass_rates, latencies or {}, prices)
    plan = JobPlan(
        deliver=spec.deliver,
        budget_usd=spec.budget_usd,
        deadline_s=spec.deadline_s,
        candidate_cap=spec.candidate_cap,
        concurrency=spec.concurrency,
        confidence=spec.confidence,  # the spec's waves are sized for it (funnel.waves)
        score_s=DEFAULT_SCORE_S[spec.use_case] if score_s is None else score_s,
    )
    return await asyncio.to_thread(
        forecast,
        plan,
        outlooks,
        confidence=confidence or spec.confidence or DEFAULT_CONFIDENCE,
        simulations=simulations,
        seed=spec.seed if seed is None else seed,
        prior=pass_rates.prior,
    )
