"""Crash and resume: SIGKILL ``imagefunnel run`` at seeded random points, resume it, check the books.

One ``imagefunnel market serve`` process stands for the providers for the whole benchmark, so its
billing log (``/_market/billing``) outlives every killed job: it is the providers' side of the bill.
A baseline job runs uncrashed first; its purchases bound where the kills land (without it, twice K
does: K at a pass rate of one half). For each kill point a fresh job (its own out folder and
store) runs in a subprocess, is SIGKILLed once its ledger holds
``after_purchases`` attempts plus ``delay_s``, and is resumed (``imagefunnel resume``) until it ends.
The market is then left to finish what is still running, and the part of the billing log that
appeared during the point is compared with the job's store:

- delivered: the job ends ``delivered`` with K images;
- candidates lost: provider requests the market billed that the store holds no candidate for (an
  output the ledger recorded as unusable, a failed attempt, is not a candidate by design);
- double charges: a provider request billed twice, or one of the job's requests bought (billed)
  under more than one provider request;
- ledger vs billing: the job's ledger total minus the billed total, and the provider requests whose
  ledger charge differs from their bill (or that one side does not know).
"""

from __future__ import annotations

import math
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from imagefunnel.bench.crash_market import (
    CRASH_SCENARIO,
    MODEL,
    MarketProcess,
    cli_process,
    market_process,
    wait_for,
)
from imagefunnel.cli.runner import STORE_FILE
from imagefunnel.errors import ImageFunnelError
from imagefunnel.store import Store
from imagefunnel.store.models import CandidateRow, LedgerRow

__all__ = [
    "CRASH_SCENARIO",
    "CrashReport",
    "CrashSettings",
    "KillPoint",
    "MarketProcess",
    "PointResult",
    "kill_points",
    "market_process",
    "run_crash_bench",
    "run_point",
]

_CENT_EPSILON = 1e-9  # "to the cent and beyond": float sums of the same charges agree to this
_POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class KillPoint:
    """Kill once the job's ledger holds ``after_purchases`` attempts, ``delay_s`` later.

    ``while_scoring``: and only once the ledger has settled a purchase whose image is not yet a
    candidate (bought, being scored): the kill lands inside that window, not at random.
    """

    index: int
    after_purchases: int
    delay_s: float
    while_scoring: bool = False


@dataclass(frozen=True, slots=True)
class CrashSettings:
    kills: int
    deliver: int
    seed: int = 0
    scenario: str | None = None  # a built-in scenario name or YAML path; None: CRASH_SCENARIO
    concurrency: int = 4
    max_delay_s: float = 0.5
    max_resumes: int = 3
    job_timeout_s: float = 600.0
    baseline: bool = True  # run an uncrashed job first (a control, and the bound of the kill points)
    targeted: tuple[KillPoint, ...] = ()  # run after the seeded points (e.g. ``while_scoring`` ones)


@dataclass(frozen=True, slots=True)
class PointResult:
    point: KillPoint | None  # None: the baseline, never killed
    job_id: str
    killed: bool  # False: the job ended on its own before the kill point
    attempts_at_kill: int
    in_flight_at_kill: int  # ledger attempts dispatched and not settled when the process died
    resumes: int
    status: str
    delivered: int
    asked: int
    attempts: int
    candidates: int
    billed: int  # provider requests the market billed while this job ran
    billed_usd: float
    ledger_usd: float
    candidates_lost: int
    double_charges: int
    mismatched: int
    closed_at_quote: int  # attempts resume could not re-attach (interrupted or lost)
    wall_s: float
    # The naming window: the process died after the provider took a request and before its answer
    # (the provider's id) reached the store. Resume looks such a request up where the provider lists
    # what it took (fal, Replicate); one it cannot find is booked at its quote and its image, if
    # any, is never fetched. Every other mismatch or loss is a defect.
    unnamed_billed: int = 0  # requests the market billed whose provider id the ledger never learned
    mismatched_named: int = 0  # mismatches between the ledger and the bill for requests it had named
    lost_named: int = 0  # billed images lost although their request was named in the ledger

    @property
    def ledger_delta_usd(self) -> float:
        return self.ledger_usd - self.billed_usd

    @property
    def delivered_all(self) -> bool:
        return self.status == "delivered" and self.delivered == self.asked

    @property
    def clean(self) -> bool:
        return (
            self.delivered_all
            and self.candidates_lost == 0
            and self.double_charges == 0
            and self.mismatched == 0
            and abs(self.ledger_delta_usd) <= _CENT_EPSILON
        )


@dataclass(frozen=True, slots=True)
class CrashReport:
    settings: CrashSettings
    baseline: PointResult | None
    points: tuple[PointResult, ...]
    command: str = ""
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def killed(self) -> int:
        return sum(p.killed for p in self.points)

    @property
    def delivered_jobs(self) -> int:
        return sum(p.delivered_all for p in self.points)

    @property
    def candidates_lost(self) -> int:
        return sum(p.candidates_lost for p in self.points)

    @property
    def double_charges(self) -> int:
        return sum(p.double_charges for p in self.points)

    @property
    def mismatched(self) -> int:
        return sum(p.mismatched for p in self.points)

    @property
    def ledger_delta_usd(self) -> float:
        return math.fsum(p.ledger_delta_usd for p in self.points)


def kill_points(*, kills: int, purchases: int, max_delay_s: float, seed: int) -> list[KillPoint]:
    """``kills`` seeded points spread over a job of about ``purchases`` attempts."""
    rng = random.Random(seed)
    return [
        KillPoint(i + 1, rng.randint(1, max(1, purchases)), round(rng.uniform(0.0, max_delay_s), 3))
        for i in range(kills)
    ]


def job_spec(settings: CrashSettings, *, seed: int) -> dict[str, object]:
    """The job every point runs (its own seed each): K to deliver, at most 4K candidates."""
    return {
        "name": "crash-test",
        "use_case": "generic",
        "prompts": ["a product photo of a ceramic mug", "a product photo of a desk lamp"],
        "model": MODEL,
        "size": {"width": 256, "height": 256},
        "deliver": settings.deliver,
        "max_candidates": 4 * settings.deliver,
        "concurrency": settings.concurrency,
        "budget_usd": 10.0,
        "deadline_s": settings.job_timeout_s,
        "seed": seed,
    }


# -- one job ---------------------------------------------------------------------------------------
def _reader(db: Path) -> Engine:
    # Read-only, so that watching the job never writes to (or migrates) the store it is writing.
    return create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")


def _reached(engine: Engine, point: KillPoint) -> bool:
    """Whether the job's store shows ``point`` (False before the store has its tables)."""
    attempts = select(func.count()).select_from(LedgerRow)
    # A purchase the ledger settled whose image is not stored yet: it is being scored.
    unscored = attempts.where(
        LedgerRow.status == "succeeded", LedgerRow.request_id.not_in(select(CandidateRow.request_id))
    )
    try:
        with engine.connect() as conn:
            if int(conn.scalar(attempts) or 0) < point.after_purchases:
                return False
            return not point.while_scoring or int(conn.scalar(unscored) or 0) > 0
    except SQLAlchemyError:
        return False


def _kill_at(proc: subprocess.Popen[bytes], db: Path, point: KillPoint, timeout_s: float) -> bool:
    """SIGKILL ``proc`` at ``point``; False when it ended on its own first."""
    deadline = time.monotonic() + timeout_s
    engine: Engine | None = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if engine is None and db.exists():
                engine = _reader(db)
            if engine is not None and _reached(engine, point):
                break
            time.sleep(_POLL_S)
        time.sleep(point.delay_s)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return True
    finally:
        if engine is not None:
            engine.dispose()


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for ``proc``; one that outlives ``timeout_s`` is killed, so no job outlives the bench."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ImageFunnelError(f"crash bench: {proc.args!r} ran past {timeout_s:.0f} s") from None


def _job_id(store: Store) -> str:
    jobs = store.jobs()
    if len(jobs) != 1:
        raise ImageFunnelError(f"crash bench: expected one job in the point's store, found {len(jobs)}")
    return jobs[0].id


def run_point(
    market: MarketProcess, settings: CrashSettings, work: Path, point: KillPoint | None, *, seed: int
) -> PointResult:
    """Run one job, kill it at ``point`` (None: never), resume it until it ends, check the books."""
    name = "baseline" if point is None else f"point-{point.index:02d}"
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(job_spec(settings, seed=seed), sort_keys=False), encoding="utf-8")
    out, log = folder / "out", folder / "cli.log"
    source = ["--out", str(out), "--providers", str(market.providers_file)]
    billed_before = {str(b["request_id"]) for b in market.billing()}
    started = time.monotonic()
    proc = cli_process(["run", str(spec), *source], log)
    killed = False
    try:
        if point is not None:
            killed = _kill_at(proc, out / STORE_FILE, point, settings.job_timeout_s)
    finally:
        if proc.poll() is None and point is not None and not killed:
            proc.kill()  # the harness itself failed (or was interrupted) while watching the job
    _wait_or_kill(proc, settings.job_timeout_s)
    store = Store(f"sqlite:///{out / STORE_FILE}")
    try:
        job_id = _job_id(store)
        ledger = store.ledger(job_id)
        attempts_at_kill = len(ledger) if killed else 0
        in_flight_at_kill = sum(r.status == "dispatched" for r in ledger) if killed else 0
        resumes = 0
        while store.job(job_id).status == "running" and resumes < settings.max_resumes:
            resumes += 1
            _wait_or_kill(cli_process(["resume", job_id, *source], log), settings.job_timeout_s)
        wait_for("the market to finish the job's requests", market.drained, timeout_s=120)
        wall = time.monotonic() - started
        billed = [b for b in market.billing() if str(b["request_id"]) not in billed_before]
        return _books(
            store, job_id, billed, point, killed, attempts_at_kill, in_flight_at_kill, resumes, wall
        )
    finally:
        store.close()


def _books(
    store: Store,
    job_id: str,
    billed: Sequence[dict[str, object]],
    point: KillPoint | None,
    killed: bool,
    attempts_at_kill: int,
    in_flight_at_kill: int,
    resumes: int,
    wall_s: float,
) -> PointResult:
    job = store.job(job_id)
    ledger = store.ledger(job_id)
    candidates = store.candidates(job_id)
    bills = Counter(str(b["request_id"]) for b in billed)
    bill_usd: dict[str, float] = {}
    for b in billed:
        key = str(b["request_id"])
        bill_usd[key] = bill_usd.get(key, 0.0) + float(str(b["usd"]))
    charged: dict[str, float] = {}
    failed: set[str] = set()
    bought: dict[str, set[str]] = {}  # the job's request -> the provider requests billed for it
    for row in ledger:
        pid = row.provider_request_id
        if pid is None:
            continue
        charged[pid] = charged.get(pid, 0.0) + (row.charged_usd or 0.0)
        if row.status == "failed":
            failed.add(pid)
        if pid in bills:
            bought.setdefault(row.request_id, set()).add(pid)
    kept = {c.provider_request_id for c in candidates}
    lost = [pid for pid in bills if pid not in kept and pid not in failed]
    doubles = sum(n - 1 for n in bills.values()) + sum(len(p) - 1 for p in bought.values())
    doubles += sum(n - 1 for n in Counter(c.request_id for c in candidates).values())
    known = set(bills) | set(charged)
    mismatched = sum(abs(charged.get(pid, 0.0) - bill_usd.get(pid, 0.0)) > _CENT_EPSILON for pid in known)
    # A charge the ledger holds under no provider id (closed at its quote) has no bill to match.
    mismatched += sum(1 for r in ledger if r.provider_request_id is None and (r.charged_usd or 0.0) > 0)
    unnamed = [pid for pid in bills if pid not in charged]
    mismatched_named = sum(abs(charged[pid] - bill_usd.get(pid, 0.0)) > _CENT_EPSILON for pid in charged)
    return PointResult(
        point=point,
        job_id=job_id,
        killed=killed,
        attempts_at_kill=attempts_at_kill,
        in_flight_at_kill=in_flight_at_kill,
        resumes=resumes,
        status=job.status,
        delivered=job.delivered,
        asked=job.deliver,
        attempts=len(ledger),
        candidates=len(candidates),
        billed=len(bills),
        billed_usd=math.fsum(bill_usd.values()),
        ledger_usd=math.fsum(r.charged_usd or 0.0 for r in ledger),
        candidates_lost=len(lost),
        double_charges=doubles,
        mismatched=mismatched,
        closed_at_quote=sum(r.status in ("interrupted", "lost") for r in ledger),
        wall_s=wall_s,
        unnamed_billed=len(unnamed),
        mismatched_named=mismatched_named,
        lost_named=sum(pid in charged for pid in lost),
    )


def run_crash_bench(
    settings: CrashSettings, *, work_dir: Path, progress: Callable[[str], None] = lambda _m: None
) -> CrashReport:
    """The baseline job, then one killed-and-resumed job per seeded kill point, then the targeted ones."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with market_process(settings.scenario, work_dir) as market:
        progress(f"market at {market.url}")
        baseline = None
        if settings.baseline:
            progress(f"baseline job of {settings.deliver} (never killed)")
            baseline = run_point(market, settings, work_dir, None, seed=settings.seed * 1000)
        points = kill_points(
            kills=settings.kills,
            purchases=baseline.attempts if baseline is not None else 2 * settings.deliver,
            max_delay_s=settings.max_delay_s,
            seed=settings.seed,
        )
        results = []
        for point in (*points, *settings.targeted):
            result = run_point(market, settings, work_dir, point, seed=settings.seed * 1000 + point.index)
            progress(_progress_line(result))
            results.append(result)
    return CrashReport(settings, baseline, tuple(results))


def _progress_line(r: PointResult) -> str:
    assert r.point is not None
    kill = (
        f"killed at {r.attempts_at_kill} attempts ({r.in_flight_at_kill} in flight)"
        if r.killed
        else "ended first"
    )
    return (
        f"point {r.point.index}: {kill}; {r.resumes} resume(s); {r.status} {r.delivered}/{r.asked}; "
        f"lost {r.candidates_lost}, double {r.double_charges}, ledger−billed ${r.ledger_delta_usd:+.6f}"
    )
