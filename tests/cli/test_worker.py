"""`imagefunnel submit` and `imagefunnel worker` as a user meets them: the entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagefunnel.store import Store

SPEC = {
    "name": "mugs",
    "use_case": "generic",
    "prompts": ["a product photo of a mug"],
    "size": {"width": 256, "height": 256},
    "deliver": 2,
    "budget_usd": 1.0,
}
MARKET = {
    "name": "one",
    "seed": 3,
    "providers": [
        {
            "name": "solo",
            "protocol": "fal",
            "models": ["fal-ai/flux/dev"],
            "processing_s": [0.01, 0.02],
            "price_usd_per_mp": 0.02,
        }
    ],
}


def imagefunnel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )


def _one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert all(word in done.stderr for word in words), done.stderr


def test_submit_refuses_a_spec_that_cannot_run_and_queues_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "rules": ["no_such_dimension > 1"]}))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    _one_line_error(
        imagefunnel("submit", str(spec), "--store", store, cwd=tmp_path), "error:", "no_such_dimension"
    )
    opened = Store(store)
    assert list(opened.jobs()) == []
    opened.close()


def test_a_worker_needs_providers_or_a_market(tmp_path: Path) -> None:
    done = imagefunnel("worker", "--store", f"sqlite:///{tmp_path / 'store.db'}", cwd=tmp_path)
    _one_line_error(done, "--providers FILE or --market SCENARIO")


def test_a_bad_shared_state_url_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "market.yaml").write_text(yaml.safe_dump(MARKET))
    args = ["--store", f"sqlite:///{tmp_path / 'store.db'}", "--market", "market.yaml"]
    done = imagefunnel("worker", *args, "--shared-state", "zookeeper://x", cwd=tmp_path)
    _one_line_error(done, "expected memory:// or redis://")


@pytest.mark.slow
def test_submitted_jobs_are_run_by_a_worker_until_none_is_left(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(SPEC))
    (tmp_path / "market.yaml").write_text(yaml.safe_dump(MARKET))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    submitted = imagefunnel("submit", "job.yaml", "--store", store, "--count", "2", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    job_ids = submitted.stdout.split()
    assert len(job_ids) == 2 and "queued 2 jobs 'mugs'" in submitted.stderr
    done = imagefunnel(
        "worker",
        "--store",
        store,
        "--market",
        "market.yaml",
        "--until-done",
        "--stats",
        "stats.json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for job_id in job_ids:
        assert f"job {job_id} delivered: 2 of 2 passed" in done.stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["jobs_finished"] == 2 and stats["peak_rss_mb"] > 0
    opened = Store(store)
    assert [(j.status, j.delivered, j.claims) for j in opened.jobs()] == [("delivered", 2, 1)] * 2
    opened.close()
