"""Three worker processes on one PostgreSQL and one emulated market, one of them SIGKILLed mid-job.

The whole run happens once (module fixture): ``imagefunnel market serve`` in a process of its own,
nine jobs queued, three ``imagefunnel worker`` processes sharing one providers file. The first
worker ("the victim") is SIGKILLed as soon as its ledger names requests at the provider (and has
none it has sent but the provider has not yet named). Each test then checks one property of what
the store and the market's billing log say afterwards.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from imagefunnel.cli.market_serve import MARKET_KEY_ENV
from imagefunnel.spec import JobSpec
from imagefunnel.store import Store
from imagefunnel.store.models import CandidateRow, JobRow, LedgerRow
from imagefunnel.store.queue import JobQueue

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MODEL = "fal-ai/flux/dev"
# Requests take 0.5-1 s at the provider, so the victim is surely killed with one in flight; the fal
# protocol bills per output megapixel, at prices that do not move.
SCENARIO = {
    "name": "shared",
    "seed": 11,
    "providers": [
        {
            "name": name,
            "protocol": "fal",
            "models": [MODEL],
            "price_usd_per_mp": price,
            "processing_s": [0.5, 1.0],
            "defect_rate": 0.2,
            "defect_mix": {"noise": 1},
        }
        for name, price in (("north", 0.02), ("south", 0.024), ("east", 0.018))
    ],
}
JOBS = 9
WORKERS = 3
LEASE_S = 6.0
VICTIM = "w0"


def _spec(seed: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": f"job-{seed}",
            "use_case": "generic",
            "prompts": ["a product photo of a mug"],
            "size": {"width": 256, "height": 256},
            "deliver": 2,
            "max_candidates": 12,
            "concurrency": 2,
            "budget_usd": 1.0,
            "deadline_s": 240,
            "seed": seed,
        }
    )


@dataclass(frozen=True)
class Run:
    store_url: str
    victim_jobs: frozenset[str]
    killed_at: datetime
    billing: list[dict[str, object]]
    logs: dict[str, str]
    exit_codes: dict[str, int]


def _cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKET_KEY_ENV: "test-key", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "imagefunnel", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def _wait(what: str, check: Callable[[], object], *, timeout_s: float = 120.0, every_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


def _market_url(log: Path) -> str | None:
    return next((word for word in log.read_text().split() if word.startswith("http://")), None)


def _victim_has_named_requests_only(store: Store) -> bool:
    """The victim holds attempts at the provider, every one named by the provider's id.

    Between a queue accepting a request and the ledger naming it there is a window (milliseconds)
    that no client can close when the provider takes no client-chosen id or idempotency key: a kill
    inside it leaves a ``lost`` attempt, charged at its quote (see ``tests/funnel/test_reattach.py``).
    The kill is placed outside it, so this run tests what is promised for every named request.
    """
    in_flight = (
        select(LedgerRow.provider_request_id)
        .join(JobRow, JobRow.id == LedgerRow.job_id)
        .where(JobRow.lease_owner == VICTIM, LedgerRow.status == "dispatched")
    )
    with store.session() as s:
        ids = list(s.scalars(in_flight))
    return bool(ids) and all(ids)


def _in_flight(url: str) -> bool:
    stats = httpx.get(f"{url}/_market/stats", timeout=5).json()
    return any(p["queued"] + p["running"] for p in stats.values())


@pytest.fixture(scope="module")
def run(postgres_module_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("cluster")
    (folder / "market.yaml").write_text(yaml.safe_dump(SCENARIO))
    market = _cli(
        [
            "market",
            "serve",
            "--scenario",
            str(folder / "market.yaml"),
            "--providers-out",
            str(folder / "providers.yaml"),
        ],
        folder / "market.log",
    )
    store = Store(postgres_module_url)  # migrates the schema before any worker starts
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        _wait(
            "the market", lambda: (folder / "providers.yaml").exists() and _market_url(folder / "market.log")
        )
        url = str(_market_url(folder / "market.log"))
        queue = JobQueue(store)
        for seed in range(JOBS):
            spec = _spec(seed)
            queue.enqueue(
                job_id=f"job-{seed:02d}", name=spec.name, spec_json=spec.model_dump_json(), deliver=2
            )
        common = ["--store", postgres_module_url, "--jobs", "2", "--lease-s", str(LEASE_S)]
        common += ["--blobs", str(folder / "blobs"), "--until-done"]
        common += ["--providers", str(folder / "providers.yaml")]
        for i in range(WORKERS):
            name = f"w{i}"
            workers[name] = _cli(["worker", *common, "--worker-id", name], folder / f"{name}.log")
        _wait("requests of the victim at the provider", lambda: _victim_has_named_requests_only(store))
        workers[VICTIM].send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        with store.session() as s:
            held = s.scalars(
                select(JobRow.id).where(JobRow.lease_owner == VICTIM, JobRow.status == "running")
            )
            victim_jobs = frozenset(held)
        codes = {name: proc.wait(timeout=240) for name, proc in workers.items()}
        _wait("the last requests to end", lambda: not _in_flight(url))
        billing = httpx.get(f"{url}/_market/billing", timeout=10).json()
        logs = {name: (folder / f"{name}.log").read_text() for name in workers}
        yield Run(postgres_module_url, victim_jobs, killed_at, billing, logs, codes)
    finally:
        for proc in [*workers.values(), market]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        store.close()


@pytest.fixture(scope="module")
def rows(run: Run) -> Iterator[tuple[list[JobRow], list[LedgerRow], list[CandidateRow]]]:
    store = Store(run.store_url)
    with store.session() as s:
        jobs = list(s.scalars(select(JobRow).order_by(JobRow.id)))
        ledger = list(s.scalars(select(LedgerRow).order_by(LedgerRow.id)))
        candidates = list(s.scalars(select(CandidateRow).order_by(CandidateRow.id)))
    store.close()
    yield jobs, ledger, candidates


Rows = tuple[list[JobRow], list[LedgerRow], list[CandidateRow]]


def _cut_off(run: Run, ledger: list[LedgerRow]) -> list[LedgerRow]:
    """Attempts the victim had started and not finished when it was killed."""
    return [
        r
        for r in ledger
        if r.job_id in run.victim_jobs
        and r.started_at < run.killed_at
        and (r.finished_at is None or r.finished_at > run.killed_at)
    ]


def test_the_kill_cut_off_requests_in_flight(run: Run, rows: Rows) -> None:
    # The premise of the tests below: the killed worker held jobs and had requests at the provider.
    _, ledger, _ = rows
    assert run.exit_codes[VICTIM] == -signal.SIGKILL
    assert run.victim_jobs
    cut_off = _cut_off(run, ledger)
    assert cut_off
    billed = {str(b["request_id"]) for b in run.billing}
    assert any(r.provider_request_id in billed for r in cut_off)  # and they were billed


def test_every_job_ends_and_the_survivors_exit_cleanly(run: Run, rows: Rows) -> None:
    jobs, ledger, _ = rows
    assert [j.status for j in jobs] == ["delivered"] * JOBS, [j.stop_reason for j in jobs]
    assert all(j.lease_owner is None for j in jobs)
    assert not [r for r in ledger if r.status == "dispatched"]  # nothing left in flight
    assert [run.exit_codes[f"w{i}"] for i in range(1, WORKERS)] == [0] * (WORKERS - 1)


def test_no_job_runs_twice_unless_its_worker_died(run: Run, rows: Rows) -> None:
    jobs, _, _ = rows
    claims = {j.id: j.claims for j in jobs}
    assert {job_id: claims[job_id] for job_id in run.victim_jobs} == dict.fromkeys(run.victim_jobs, 2)
    assert {c for job_id, c in claims.items() if job_id not in run.victim_jobs} == {1}


def test_the_killed_workers_jobs_finish_on_another_worker(run: Run) -> None:
    ends = [
        (line.split()[1], name)
        for name, log in run.logs.items()
        for line in log.splitlines()
        if line.startswith("job ") and " delivered:" in line
    ]
    finished_by = dict(ends)
    assert len(ends) == len(finished_by)  # no job finished twice
    assert {finished_by[job_id] for job_id in run.victim_jobs} <= {f"w{i}" for i in range(1, WORKERS)}
    # A job the victim finished in its last instant (stored, not yet logged) is not one of its
    # cut-off jobs; it runs two jobs at a time, so at most two can end that way.
    unlogged = {f"job-{i:02d}" for i in range(JOBS)} - set(finished_by)
    assert not unlogged & run.victim_jobs
    assert len(unlogged) <= 2


def test_no_request_is_bought_twice(rows: Rows) -> None:
    _, ledger, candidates = rows
    succeeded = Counter(r.request_id for r in ledger if r.status == "succeeded")
    assert succeeded and max(succeeded.values()) == 1
    assert len({c.request_id for c in candidates}) == len(candidates)
    provider_ids = [r.provider_request_id for r in ledger if r.provider_request_id]
    assert len(set(provider_ids)) == len(provider_ids)
    # Every request id belongs to one job (its prefix), so no two jobs ever bought under one id.
    assert all(r.request_id.startswith(r.job_id[:12]) for r in ledger)


def test_every_jobs_ledger_equals_the_markets_billing_log(run: Run, rows: Rows) -> None:
    _, ledger, _ = rows
    billed = {str(b["request_id"]): float(b["usd"]) for b in run.billing}  # type: ignore[arg-type]
    assert len(billed) == len(run.billing)
    known = [r for r in ledger if r.provider_request_id]
    # Every request whose outcome the ledger knows was charged exactly what the market billed.
    for row in known:
        if row.status != "interrupted":
            assert row.charged_usd == pytest.approx(billed.get(str(row.provider_request_id), 0.0)), row
    # Every job's ledger is its share of the billing log, to the cent and beyond: the requests the
    # kill cut off were re-attached on resume and charged what the market billed for them.
    for job_id in {r.job_id for r in ledger}:
        rows_of_job = [r for r in ledger if r.job_id == job_id]
        assert all(r.provider_request_id or r.status == "failed" for r in rows_of_job)
        assert math.fsum(r.charged_usd or 0.0 for r in rows_of_job) == pytest.approx(
            math.fsum(billed.get(str(r.provider_request_id), 0.0) for r in rows_of_job)
        )
    # The market billed nothing the ledger cannot name.
    assert set(billed) <= {str(r.provider_request_id) for r in known}
    assert math.fsum(r.charged_usd or 0.0 for r in ledger) == pytest.approx(math.fsum(billed.values()))


def test_every_attempt_cut_off_by_the_kill_names_its_provider_request(run: Run, rows: Rows) -> None:
    _, ledger, _ = rows
    cut_off = _cut_off(run, ledger)
    assert cut_off and all(r.provider_request_id for r in cut_off)
    assert not [r for r in ledger if r.status in ("interrupted", "lost")]  # every one re-attached


def test_nothing_a_killed_job_paid_for_is_thrown_away(run: Run, rows: Rows) -> None:
    _, ledger, candidates = rows
    kept = {c.provider_request_id for c in candidates}
    billed = {str(b["request_id"]) for b in run.billing}
    cut_off = {str(r.provider_request_id) for r in _cut_off(run, ledger)} & billed
    assert cut_off  # the premise: the victim had bought something when it was killed
    assert cut_off <= kept
    # And the resumed jobs bought none of it again: one candidate per request, one request per image.
    for row in _cut_off(run, ledger):
        assert row.status == "succeeded" and row.request_id in {c.request_id for c in candidates}
    billed_to_victim_jobs = {str(r.provider_request_id) for r in ledger if r.job_id in run.victim_jobs}
    assert billed_to_victim_jobs & billed <= kept
