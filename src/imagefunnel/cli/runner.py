"""Wiring: build the router, scorer, store and funnel for a spec, run it, write the outputs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagefunnel.cli.progress import RichObserver
from imagefunnel.delivery import write_delivery
from imagefunnel.funnel import JobResult, load_result
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
from imagefunnel.report import write_report
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store


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
    with RichObserver(console=console, deliver=spec.deliver) as observer:
        outcome = await run_funnel_job(
            spec,
            providers,
            store=store,
            blobs=blobs,
            observer=observer,
            resume_job_id=resume_job_id,
        )
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
        result = write_delivery(load_result(store, blobs, job_id), blobs, out_dir)
        ledger = store.ledger(job_id)
    finally:
        store.close()
    results_json = out_dir / "results.json"
    results_json.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    report = write_report(result, blobs, out_dir / "report.html", spec=spec, ledger=ledger)
    return RunOutputs(result, report, results_json, wall)
