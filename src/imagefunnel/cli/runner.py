"""Wiring: build the router, scorer, store and funnel for a spec, run it, write the outputs."""

from __future__ import annotations

import asyncio
import shlex
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagefunnel.cli.progress import RichObserver
from imagefunnel.delivery import write_delivery
from imagefunnel.funnel import JobResult, load_result
from imagefunnel.jobs import run_funnel_job
from imagefunnel.providers.base import Provider
from imagefunnel.quote_check import (
    QuoteCheck,
    QuoteRecord,
    ResultsFile,
    check_quote,
    load_record,
    save_record,
)
from imagefunnel.report import write_report
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

STORE_FILE = "imagefunnel.db"
BLOBS_DIR = "blobs"
QUOTE_FILE = "quote.json"  # the latest run's quote, next to its results.json


@dataclass(frozen=True, slots=True)
class RunOutputs:
    result: JobResult
    report: Path
    results_json: Path
    wall_s: float
    quote: QuoteCheck | None = None  # the job's quote held up against it (None: run without one)


@dataclass(frozen=True, slots=True)
class JobSource:
    """Where a job's outputs go and where its providers come from, as the command line gave them:
    exactly what ``imagefunnel resume`` needs to carry the job on."""

    out_dir: Path
    providers_path: Path | None = None
    scenario: str = "demo"

    def resume_command(self, job_id: str) -> str:
        parts = ["imagefunnel", "resume", job_id, "--out", str(self.out_dir)]
        if self.providers_path is not None:
            parts += ["--providers", str(self.providers_path)]
        else:
            parts += ["--market", self.scenario]
        return shlex.join(parts)


class JobInterrupted(Exception):
    """Ctrl-C stopped a job mid-way; it stays resumable (not an error of imagefunnel's)."""

    def __init__(self, job_id: str, resume_command: str) -> None:
        super().__init__(f"job {job_id} interrupted")
        self.job_id = job_id
        self.resume_command = resume_command


async def _settle_other_tasks() -> None:
    """Cancel and await every task but this one, so nothing still talks to a provider when its
    client closes (a shielded submit or quote would otherwise fail or be destroyed pending)."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


async def _run(
    spec: JobSpec,
    providers: Sequence[Provider],
    store: Store,
    blobs: BlobStore,
    console: Console,
    *,
    job_id: str,
    resume: bool,
    announce: str | None,
) -> None:
    if announce is not None:
        # Printed once the loop handles Ctrl-C, and with no await before the job is stored: an
        # interrupt after this line always leaves a job that the printed command can resume.
        console.print(announce, markup=False, highlight=False, soft_wrap=True)
    # The CLI owns this event loop, so every other task in it is this job's.
    try:
        with RichObserver(console=console, deliver=spec.deliver) as observer:
            await run_funnel_job(
                spec,
                providers,
                store=store,
                blobs=blobs,
                observer=observer,
                job_id=None if resume else job_id,
                resume_job_id=job_id if resume else None,
                close_providers=False,
            )
    finally:
        await _settle_other_tasks()
        for provider in providers:
            await provider.aclose()


def open_store(out_dir: Path) -> Store:
    out_dir.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{out_dir / STORE_FILE}")


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
    source: JobSource,
    console: Console,
    resume_job_id: str | None = None,
    quote: QuoteRecord | None = None,
) -> RunOutputs:
    """Run one job (or resume ``resume_job_id``) to completion; write ``report.html``, ``results.json``.

    ``quote`` (a new job's) is kept with the job in ``quotes/<job id>.json`` before anything is
    bought; a resumed job finds its own there. Both outputs then hold it up against the job.

    Raises ``JobInterrupted`` on Ctrl-C, once the in-flight requests are cancelled and the providers
    closed; the store keeps the job resumable.
    """
    out_dir = source.out_dir
    job_id = resume_job_id or uuid.uuid4().hex
    command = source.resume_command(job_id)
    announce = None
    if resume_job_id is None:  # one line, so that the id and the command can be copied (or parsed)
        announce = f"job {job_id} started: {spec.deliver} to deliver; resume with: {command}"
    if resume_job_id is None and quote is not None:
        save_record(out_dir, job_id, quote)
        (out_dir / QUOTE_FILE).write_text(quote.quote.model_dump_json(indent=2), encoding="utf-8")
    record = load_record(out_dir, job_id) if resume_job_id is not None else quote
    store = open_store(out_dir)
    blobs = BlobStore(out_dir / BLOBS_DIR)
    started = time.perf_counter()
    try:
        try:
            asyncio.run(
                _run(
                    spec,
                    providers,
                    store,
                    blobs,
                    console,
                    job_id=job_id,
                    resume=resume_job_id is not None,
                    announce=announce,
                )
            )
        except KeyboardInterrupt:
            raise JobInterrupted(job_id, command) from None
        wall = time.perf_counter() - started
        result = write_delivery(load_result(store, blobs, job_id), blobs, out_dir)
        ledger = store.ledger(job_id)
        check = None if record is None else _check(record, result, store, job_id, wall, resumed=resume_job_id)
    finally:
        store.close()
    results_json = out_dir / "results.json"
    results = ResultsFile(**dict(result), quote=check)
    results_json.write_text(results.model_dump_json(indent=2), encoding="utf-8")
    report = write_report(result, blobs, out_dir / "report.html", spec=spec, ledger=ledger, quote=check)
    return RunOutputs(result, report, results_json, wall, check)


def _check(
    record: QuoteRecord, result: JobResult, store: Store, job_id: str, wall: float, *, resumed: str | None
) -> QuoteCheck:
    """The quote against the job. A resumed job's wall time is the time since it was first started
    (its earlier runs left no measure of their own), so it includes the time it was stopped."""
    if resumed is None:
        return check_quote(record, result, wall_s=wall, wall_note="this run")
    job = store.job(job_id)
    elapsed = wall if job.finished_at is None else (job.finished_at - job.created_at).total_seconds()
    return check_quote(
        record, result, wall_s=elapsed, wall_note="since the job first started, time stopped included"
    )
