"""`imagefunnel jobs list`: an out folder's jobs, newest first, and the command that resumes each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from imagefunnel.cli import app as cli_app
from imagefunnel.cli.jobs_list import list_jobs
from imagefunnel.cli.runner import STORE_FILE, open_store
from imagefunnel.store.models import JobRow
from imagefunnel.store.queue import JobQueue

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _created(out: Path, job_id: str, at: datetime) -> None:
    store = open_store(out)
    with store.session() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(created_at=at))
    store.close()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A finished job, one a crash left running, and one a live worker holds, oldest first."""
    folder = tmp_path / "out"
    store = open_store(folder)
    store.create_job(job_id="done", name="mugs", spec_json="{}", deliver=2)
    store.begin_attempt(
        job_id="done", request_id="done-00000", attempt=1, wave=1, provider="p", model="m", quoted_usd=0.5
    )
    store.end_attempt(request_id="done-00000", attempt=1, status="succeeded", charged_usd=0.25, latency_s=1)
    store.finish_job("done", status="delivered", stop_reason="2 of 2 passed", delivered=2)
    store.create_job(job_id="crashed", name="lamps", spec_json="{}", deliver=3)
    store.begin_attempt(
        job_id="crashed",
        request_id="crashed-00000",
        attempt=1,
        wave=1,
        provider="p",
        model="m",
        quoted_usd=0.1,
    )
    JobQueue(store).enqueue(job_id="held", name="chairs", spec_json="{}", deliver=1)
    assert JobQueue(store).claim("w1", lease_s=3600.0) is not None
    store.close()
    for i, job_id in enumerate(("done", "crashed", "held")):
        _created(folder, job_id, T0 + timedelta(minutes=i))
    return folder


def test_lists_newest_first_with_what_each_job_achieved(out: Path) -> None:
    jobs = list_jobs(out)
    assert [j.id for j in jobs] == ["held", "crashed", "done"]
    done = jobs[2]
    assert (done.status, done.delivered, done.asked, done.stop_reason) == ("delivered", 2, 2, "2 of 2 passed")
    assert done.spent_usd == pytest.approx(0.25)  # the charge, not the quote
    assert done.started_at == T0 and done.finished_at is not None
    # An attempt still in flight counts at its quote: the most it can cost.
    assert jobs[1].spent_usd == pytest.approx(0.1) and jobs[1].finished_at is None


def test_only_a_job_that_stopped_mid_way_gets_a_resume_command(out: Path) -> None:
    held, crashed, done = list_jobs(out)
    assert crashed.resume_command == f"imagefunnel resume crashed --out {out}"
    assert done.resume_command is None
    # A job a live worker holds is running there: resuming it here would run it twice.
    assert held.held_by == "w1" and held.resume_command is None


def test_a_job_whose_workers_lease_ran_out_can_be_resumed(out: Path) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    held = list_jobs(out, now=later)[0]
    assert held.held_by is None
    assert held.resume_command == f"imagefunnel resume held --out {out}"


def test_json_lists_every_field(out: Path) -> None:
    shown = CliRunner().invoke(cli_app.app, ["jobs", "list", "--out", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    jobs = json.loads(shown.output)
    assert [j["id"] for j in jobs] == ["held", "crashed", "done"]
    assert set(jobs[0]) == {
        "id",
        "name",
        "status",
        "delivered",
        "asked",
        "spent_usd",
        "started_at",
        "finished_at",
        "stop_reason",
        "held_by",
        "resume_command",
    }
    assert jobs[1]["resume_command"] == f"imagefunnel resume crashed --out {out}"


def test_table_shows_each_job_and_how_to_resume_the_stopped_one(out: Path) -> None:
    shown = CliRunner().invoke(cli_app.app, ["jobs", "list", "--out", str(out)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    for text in ("held", "crashed", "done", "2/2", "0/3", "0.2500", "running, resumable", "held by w1"):
        assert text in shown.output
    assert f"imagefunnel resume crashed --out {out}" in shown.output
    assert "--providers FILE or --market SCENARIO" in shown.output  # the store does not know them


def test_a_folder_without_a_store_is_an_error_and_stays_empty(tmp_path: Path) -> None:
    shown = CliRunner().invoke(cli_app.app, ["jobs", "list", "--out", str(tmp_path / "none")])
    assert shown.exit_code == 2
    assert shown.output.count("\n") == 1 and shown.output.startswith("error: no job store")
    assert not (tmp_path / "none" / STORE_FILE).exists()


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    shown = CliRunner().invoke(cli_app.app, ["jobs", "list", "--out", str(tmp_path), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output) == []
    shown = CliRunner().invoke(cli_app.app, ["jobs", "list", "--out", str(tmp_path)])
    assert shown.exit_code == 0 and "no jobs in" in shown.output
