"""A job killed mid-way (SIGKILL, no clean-up) resumes from its store: nothing is lost or bought twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

SCENARIO = {
    "name": "slow",
    "seed": 5,
    "providers": [
        {
            "name": "slowpoke",
            "protocol": "fal",
            "models": ["fal-ai/flux/dev"],
            "price_usd_per_mp": 0.02,
            "processing_s": [0.3, 0.5],
            "defect_rate": 0.2,
            "defect_mix": {"noise": 1},
        }
    ],
}
SPEC = {
    "name": "crashy",
    "use_case": "generic",
    "prompts": ["a headshot"],
    "deliver": 6,
    "max_candidates": 30,
    "concurrency": 3,
    "budget_usd": 1.0,
    "deadline_s": 120,
}


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imagefunnel", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def test_killed_job_resumes_without_rebuying(tmp_path: Path) -> None:
    (tmp_path / "market.yaml").write_text(yaml.safe_dump(SCENARIO))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    db = out / "imagefunnel.db"
    run = cli("run", "job.yaml", "--market", "market.yaml", "--out", str(out), cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if query(db, "select count(*) from candidates")[0][0] >= 2:
                    break
            except sqlite3.OperationalError:
                pass  # tables not migrated yet
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert run.returncode == -signal.SIGKILL

    (job_id,) = query(db, "select id from jobs")[0]
    before = query(db, "select id, request_id, passed from candidates order by id")
    assert query(db, "select status from jobs")[0][0] == "running"

    resumed = cli("resume", str(job_id), "--market", "market.yaml", "--out", str(out), cwd=tmp_path)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stdout + stderr
    assert "DELIVERED" in stdout

    status, delivered = query(db, "select status, delivered from jobs")[0]
    assert (status, delivered) == ("delivered", 6)
    # Everything scored before the crash is still there, untouched.
    assert query(db, "select id, request_id, passed from candidates order by id")[: len(before)] == before
    # No request was bought twice: at most one succeeded attempt per request id.
    succeeded = Counter(r[0] for r in query(db, "select request_id from ledger where status = 'succeeded'"))
    assert succeeded and max(succeeded.values()) == 1
    # In-flight attempts lost in the crash were closed and counted at their quote, never dropped.
    assert query(db, "select count(*) from ledger where status = 'dispatched'")[0][0] == 0
    for quoted, charged in query(
        db, "select quoted_usd, charged_usd from ledger where status = 'interrupted'"
    ):
        assert charged == quoted
    (spent,) = query(db, "select sum(charged_usd) from ledger")[0]
    assert spent is not None and spent <= SPEC["budget_usd"]
    candidate_requests = [r[0] for r in query(db, "select request_id from candidates")]
    assert len(candidate_requests) == len(set(candidate_requests))


def test_resuming_a_finished_job_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "market.yaml").write_text(yaml.safe_dump(SCENARIO))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**SPEC, "deliver": 2}))
    out = tmp_path / "out"
    first = cli("run", "job.yaml", "--market", "market.yaml", "--out", str(out), cwd=tmp_path)
    assert first.wait(timeout=120) == 0
    db = out / "imagefunnel.db"
    (job_id,) = query(db, "select id from jobs")[0]
    ledger_before = query(db, "select count(*) from ledger")
    again = cli("resume", str(job_id), "--market", "market.yaml", "--out", str(out), cwd=tmp_path)
    assert again.wait(timeout=120) == 0
    assert query(db, "select count(*) from ledger") == ledger_before
