"""What ``imagefunnel jobs list`` shows: the jobs in an out folder's store, newest first, and how to
resume each. Apart from the command (``cli/jobs_cmd.py``) so that the store is imported only when used."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, TypeAdapter
from rich.console import Console
from rich.table import Table

from imagefunnel.cli.runner import STORE_FILE, open_store
from imagefunnel.store.models import JobRow

__all__ = ["LISTINGS", "JobListing", "list_jobs", "print_table"]

# The store does not record which providers a job was started with, so the resume command it
# prints names the folder only; the user adds the --providers or --market the job ran with.
_SOURCE_HINT = "add the --providers FILE or --market SCENARIO the job was started with"


class JobListing(BaseModel):
    """One job as ``jobs list --json`` prints it."""

    id: str
    name: str
    status: str
    delivered: int
    asked: int
    spent_usd: float
    started_at: datetime
    finished_at: datetime | None
    stop_reason: str | None
    held_by: str | None  # the worker whose lease on the job is still live
    resume_command: str | None  # for a job that stopped mid-way and no worker holds


LISTINGS = TypeAdapter(list[JobListing])


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; the store writes them in UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _held_by(row: JobRow, now: datetime) -> str | None:
    expires = _aware(row.lease_expires_at)
    if row.lease_owner is None or expires is None or expires <= now:
        return None
    return row.lease_owner


def _listing(row: JobRow, *, spent_usd: float, out_dir: Path, now: datetime) -> JobListing:
    held_by = _held_by(row, now) if row.status == "running" else None
    resumable = row.status == "running" and held_by is None
    command = shlex.join(["imagefunnel", "resume", row.id, "--out", str(out_dir)]) if resumable else None
    return JobListing(
        id=row.id,
        name=row.name,
        status=row.status,
        delivered=row.delivered,
        asked=row.deliver,
        spent_usd=spent_usd,
        started_at=_aware(row.created_at) or now,
        finished_at=_aware(row.finished_at),
        stop_reason=row.stop_reason,
        held_by=held_by,
        resume_command=command,
    )


def list_jobs(out_dir: Path, *, now: datetime | None = None) -> list[JobListing]:
    """Every job in ``out_dir``'s store, newest first. ``StoreError`` if it has no store."""
    from imagefunnel.errors import StoreError

    if not (out_dir / STORE_FILE).is_file():
        raise StoreError(f"no job store in {out_dir} ({STORE_FILE}); run a job with --out {out_dir} first")
    moment = now or datetime.now(UTC)
    store = open_store(out_dir)
    try:
        rows = sorted(store.jobs(), key=lambda r: (_aware(r.created_at), r.id), reverse=True)
        return [_listing(r, spent_usd=store.spent_usd(r.id), out_dir=out_dir, now=moment) for r in rows]
    finally:
        store.close()


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_table(console: Console, jobs: Sequence[JobListing], out_dir: Path) -> None:
    table = Table(title=f"jobs in {out_dir}", title_justify="left")
    for column in ("id", "name", "status", "delivered", "spent $", "started (UTC)", "finished (UTC)", "stop"):
        # Ids and times stay whole (they are copied into commands); the stop reason wraps.
        table.add_column(
            column,
            justify="right" if column in ("delivered", "spent $") else "left",
            no_wrap=column != "stop",
        )
    for job in jobs:
        status = job.status
        if job.held_by is not None:
            status = f"{status} (held by {job.held_by})"
        elif job.resume_command is not None:
            status = f"{status}, resumable"
        table.add_row(
            job.id,
            job.name,
            status,
            f"{job.delivered}/{job.asked}",
            f"{job.spent_usd:.4f}",
            _when(job.started_at),
            _when(job.finished_at),
            job.stop_reason or "",
        )
    console.print(table)
    resumable = [job for job in jobs if job.resume_command is not None]
    for job in resumable:
        console.print(
            f"resume {job.id[:12]}: {job.resume_command}", markup=False, highlight=False, soft_wrap=True
        )
    if resumable:
        console.print(f"({_SOURCE_HINT})", markup=False, highlight=False)
