"""Wiring: build the router, scorer, store and funnel for a spec, run it, write the outputs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagefunnel.cli.progress import RichObserver
from imagefunnel.executors import (
    DEFAULT_EXECUTOR_URL,
    ScorerConfig,
    open_executor,
    parse_executor_url,
)
from imagefunnel.funnel import Funnel, JobResult, load_result
from imagefunnel.providers.base import Provider
from imagefunnel.report import write_report
from imagefunnel.routing import Router
from imagefunnel.routing.passrates import PassRateBook
from imagefunnel.scoring import Scorer
from imagefunnel.scoring.jobcontext import job_context
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.pass_rates import SqlPassRates


@dataclass(frozen=True, slots=True)
class RunOutputs:
    result: JobResult
    report: Path
    results_json: Path
    wall_s: float


async def _run(
    spec: JobSpec,
    providers: Sequence[Provider],
    store: Store,
    blobs: BlobStore,
    console: Console,
    resume_job_id: str | None,
) -> str:
    scorer = Scorer(
        thresholds=spec.thresholds or None,
        score_all=spec.score_all,
        rules=spec.rules,  # unknown dimensions in rules are refused here, before anything is bought
        use_case=spec.use_case,  # a headshot job gets the headshot tier
        context=job_context(spec),  # references, source and brief: decoded once per job
    )
    # Pass rates learned from verdicts persist in the store, shared across jobs and restarts.
    pass_rates = PassRateBook(persistence=SqlPassRates(store.engine))
    router = Router(providers, ledger=store, pass_rates=pass_rates)
    # Where candidates are scored: local://threads (default) or local://processes?workers=N.
    choice = parse_executor_url(os.environ.get("IMAGEFUNNEL_EXECUTOR", DEFAULT_EXECUTOR_URL))
    config = ScorerConfig.from_spec(spec) if choice.kind == "processes" else None
    executor = open_executor(choice, config or ScorerConfig())
    with executor, RichObserver(console=console, deliver=spec.deliver) as observer:
        funnel = Funnel(
            router=router,
            scorer=scorer,
            store=store,
            blobs=blobs,
            executor=executor,
            observer=observer,
            scorer_config=config,
        )
        try:
            if resume_job_id is not None:
                outcome = await funnel.resume(resume_job_id)
            else:
                outcome = await funnel.run(spec)
        finally:
            for provider in providers:
                await provider.aclose()
    return outcome.job_id


def open_store(out_dir: Path) -> Store:
    out_dir.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{out_dir / 'imagefunnel.db'}")


def stored_spec(out_dir: Path, job_id: str) -> JobSpec:
    """The spec a job was started with, as the store recorded it."""
    store = open_store(out_dir)
    try:
        return JobSpec.model_validate_json(store.job(job_id).spec_json)
    finally:
        store.close()


def run_job(
    spec: JobSpec,
    providers: Sequence[Provider],
    *,
    out_dir: Path,
    console: Console,
    resume_job_id: str | None = None,
) -> RunOutputs:
    """Run one job (or resume ``resume_job_id``) to completion; write ``report.html``, ``results.json``."""
    store = open_store(out_dir)
    blobs = BlobStore(out_dir / "blobs")
    started = time.perf_counter()
    try:
        job_id = asyncio.run(_run(spec, providers, store, blobs, console, resume_job_id))
        wall = time.perf_counter() - started
        result = load_result(store, blobs, job_id)
    finally:
        store.close()
    results_json = out_dir / "results.json"
    results_json.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    report = write_report(result, blobs, out_dir / "report.html")
    return RunOutputs(result, report, results_json, wall)
