"""Exit codes a script can rely on, the job id printed at start, and Ctrl-C leaving a resumable job."""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from imagefunnel.cli import app as cli_app
from imagefunnel.cli.demo import fresh_demo_state
from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.cli.progress import RichObserver
from imagefunnel.cli.providers import health_exit_code, hidden_providers
from imagefunnel.cli.runner import JobSource, open_store
from imagefunnel.cli.summary import delivered_line, job_exit_code, print_summary
from imagefunnel.errors import ImageFunnelError
from imagefunnel.funnel import CandidateScored, JobResult

ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def result(status: str, *, delivered: int = 12, passed: int = 12, asked: int = 12) -> JobResult:
    return JobResult(
        job_id="j", name="n", status=status, stop_reason="", asked=asked, delivered=delivered,
        candidates_generated=20, candidates_passed=passed, failed_attempts=0, quoted_usd=0.0,
        spent_usd=0.01, providers=[], candidates=[],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code"),
    [("delivered", ExitCode.OK), ("partial", ExitCode.PARTIAL), ("failed", ExitCode.FAILED)],
)
def test_run_exits_with_the_code_of_the_jobs_outcome(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: str, code: ExitCode
) -> None:
    monkeypatch.setattr("imagefunnel.cli.demo.run_spec", lambda *_a, **_k: result(status))
    done = CliRunner().invoke(cli_app.app, ["run", str(tmp_path / "spec.yaml")])
    assert done.exit_code == code, done.output
    assert job_exit_code(result(status)) == code


def test_every_job_command_documents_its_exit_codes() -> None:
    for command in ("run", "demo", "resume"):
        shown = CliRunner().invoke(cli_app.app, [command, "--help"], env={"COLUMNS": "400"})
        assert "130: interrupted" in " ".join(shown.output.split()), command


def test_progress_counts_passed_out_of_k_never_more() -> None:
    observer = RichObserver(console=Console(file=io.StringIO()), deliver=12)
    event = CandidateScored(1, 1, "p", True, (), passed_total=15, generated_total=20, spent_usd=0.0)
    observer.candidate_scored(event)
    (task,) = observer.progress.tasks
    assert (task.completed, task.total) == (12, 12)


def test_summary_says_how_many_passed_when_more_passed_than_asked() -> None:
    assert delivered_line(result("delivered", passed=15)) == "passed 15, delivered 12/12"
    assert delivered_line(result("partial", delivered=5, passed=5)) == "delivered 5/12"
    out = Console(file=io.StringIO(), width=300)
    print_summary(out, result("delivered", passed=15), wall_s=1.0)
    assert "passed 15, delivered 12/12" in out.file.getvalue()  # type: ignore[attr-defined]


def test_the_resume_command_names_out_and_where_providers_come_from(tmp_path: Path) -> None:
    out = tmp_path / "my out"
    assert JobSource(out_dir=out).resume_command("abc") == (
        f"imagefunnel resume abc --out {shlex.quote(str(out))} --market demo"
    )
    by_file = JobSource(out_dir=out, providers_path=Path("p.yaml"), scenario="flaky")
    assert by_file.resume_command("abc").endswith("--providers p.yaml")


def test_a_fresh_demo_removes_only_a_demo_store(tmp_path: Path) -> None:
    assert not fresh_demo_state(tmp_path, demo_name="demo")
    store = open_store(tmp_path)
    store.start_job(job_id="a", name="demo", spec_json="{}", deliver=1)
    store.close()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "x").write_bytes(b"x")
    (tmp_path / "mine.txt").write_text("not ours")
    assert fresh_demo_state(tmp_path, demo_name="demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    store = open_store(tmp_path)
    store.start_job(job_id="b", name="my-real-job", spec_json="{}", deliver=1)
    store.close()
    with pytest.raises(ImageFunnelError, match="my-real-job"):
        fresh_demo_state(tmp_path, demo_name="demo")
    assert (tmp_path / "imagefunnel.db").exists()


def _imagefunnel(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagefunnel", *args]


def test_ctrl_c_prints_the_resume_command_and_that_command_finishes_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _imagefunnel("demo", "--deliver", "3", "--out", str(out)),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    killer = threading.Timer(120, proc.kill)  # a hung run fails the test instead of hanging it
    killer.start()
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if " started: " in line:
                break
        started = re.search(r"^job (\w+) started: 3 to deliver; resume with: (.+)$", lines[-1])
        assert started, lines
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate()
    finally:
        killer.cancel()
    job_id, command = started.groups()
    assert proc.returncode == ExitCode.INTERRUPTED, rest + err
    assert f"resume with: {command}" in rest
    assert command == f"imagefunnel resume {job_id} --out {out} --market demo"
    for noise in ("Traceback", "Task was destroyed", "never retrieved", "Exception"):
        assert noise not in rest + err
    resumed = subprocess.run(
        _imagefunnel(*shlex.split(command)[1:]),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert resumed.returncode in (ExitCode.OK, ExitCode.PARTIAL), resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"job {job_id}" in resumed.stdout
    # The quote the demo made as it started is found again and held up against the resumed job.
    assert "quote vs actual (the quote made as it started)" in resumed.stdout
    assert "actual counts since the job first started, time stopped included" in resumed.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["quote"]["wall_note"] == "since the job first started, time stopped included"
    assert results["quote"]["spend_usd"]["actual"] == pytest.approx(results["spent_usd"])


def test_providers_list_says_which_providers_it_hides_and_why() -> None:
    offer = {"fal-schnell": {"flux-schnell"}, "box": {"sdxl", "flux-dev"}}
    assert hidden_providers(offer, "sdxl") == ["fal-schnell (serves flux-schnell, not sdxl)"]
    shown = CliRunner().invoke(cli_app.app, ["providers", "list", "--model", "fal-ai/flux/schnell"])
    assert shown.exit_code == 0, shown.output
    assert "hidden: spot-4090 (serves fal-ai/flux/dev, not fal-ai/flux/schnell)" in shown.output


def test_providers_health_exits_by_how_many_are_up() -> None:
    assert health_exit_code([True, True]) == ExitCode.OK
    assert health_exit_code([True, False]) == ExitCode.PARTIAL
    assert health_exit_code([False]) == ExitCode.FAILED
    assert health_exit_code([]) == ExitCode.FAILED
