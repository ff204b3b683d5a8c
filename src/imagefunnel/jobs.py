"""Run one job end to end with the library's parts: scorer, learned pass rates, router, executor, funnel.

Every front end (the CLI, the service's workers, benchmarks) runs a job through
:func:`run_funnel_job`, so they all wire the same parts the same way; only how progress is shown
(the ``observer``) and where providers come from differ.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from imagefunnel.executors import DEFAULT_EXECUTOR_URL, ScorerConfig, open_executor, parse_executor_url
from imagefunnel.funnel import Funnel, FunnelObserver, FunnelOutcome
from imagefunnel.providers.base import Provider
from imagefunnel.routing import HealthProber, HealthTracker, Router
from imagefunnel.routing.cooldowns import SharedCooldowns
from imagefunnel.routing.passrates import PassRateBook
from imagefunnel.scoring import Scorer
from imagefunnel.scoring.jobcontext import job_context
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.pass_rates import SqlPassRates
from imagefunnel.store.price_drift import learned_prices

__all__ = ["DEFAULT_PROBE_INTERVAL_S", "build_scorer", "run_funnel_job"]

# How often a running job checks each provider's health() besides what its purchases tell: often
# enough to see an outage begin or end within a wave, cheap (a pricing or model-list call).
DEFAULT_PROBE_INTERVAL_S = 15.0


def build_scorer(spec: JobSpec) -> Scorer:
    """The job's scorer; unknown dimensions in its rules are refused here, before anything is bought."""
    return Scorer(
        thresholds=spec.thresholds or None,
        score_all=spec.score_all,
        rules=spec.rules,
        use_case=spec.use_case,  # a headshot job gets the headshot tier
        context=job_context(spec),  # references, source and brief: decoded once per job
    )


async def run_funnel_job(
    spec: JobSpec,
    providers: Sequence[Provider],
    *,
    store: Store,
    blobs: BlobStore,
    observer: FunnelObserver | None = None,
    job_id: str | None = None,
    resume_job_id: str | None = None,
    executor_url: str | None = None,
    cooldowns: SharedCooldowns | None = None,
    close_providers: bool = True,
    probe_interval_s: float | None = DEFAULT_PROBE_INTERVAL_S,
) -> FunnelOutcome:
    """Run ``spec`` as job ``job_id`` (a new id if None), or carry on the stored job
    ``resume_job_id``; close the providers either way.

    ``executor_url`` says where candidates are scored (default: ``IMAGEFUNNEL_EXECUTOR``, else a
    thread pool): ``local://threads``, ``local://processes?workers=N``, ``ray`` or ``ray://head:10001``.
    ``cooldowns``: provider cooldowns shared with other jobs and workers (None: this job's own).
    ``close_providers=False`` leaves closing them to a caller that owns the event loop, so that on
    cancellation it can first settle every task still using them (shielded submits and quotes).
    ``probe_interval_s``: seconds between active health probes of the providers while the job runs
    (None: passive health only); the prober stops when the job ends, cancelled or not.
    """
    prober: HealthProber | None = None
    try:
        scorer = build_scorer(spec)
        # Pass rates learned from verdicts persist in the store, shared across jobs and restarts.
        pass_rates = PassRateBook(persistence=SqlPassRates(store.engine))
        health = HealthTracker(clock=time.monotonic, shared=cooldowns) if cooldowns else None
        # So does the charge/quote drift its bills showed (faded by age), which the quote weighs too.
        prices = learned_prices(store.engine)
        router = Router(providers, ledger=store, pass_rates=pass_rates, health=health, prices=prices)
        if probe_interval_s is not None:
            # A passed probe closes a half-open breaker without risking a paid request on it.
            prober = HealthProber(providers, router.health, interval_s=probe_interval_s)
            prober.start()
        url = executor_url or os.environ.get("IMAGEFUNNEL_EXECUTOR", DEFAULT_EXECUTOR_URL)
        choice = parse_executor_url(url)
        config = ScorerConfig.from_spec(spec) if choice.needs_config else None
        with open_executor(choice, config or ScorerConfig()) as executor:
            funnel = Funnel(
                router=router,
                scorer=scorer,
                store=store,
                blobs=blobs,
                executor=executor,
                observer=observer,
                scorer_config=config,
            )
            if resume_job_id is not None:
                return await funnel.resume(resume_job_id, spec=spec)
            return await funnel.run(spec, job_id=job_id)
    finally:
        if prober is not None:  # before the providers close: no probe may use a closed client
            await prober.aclose()
        if close_providers:
            for provider in providers:
                await provider.aclose()
