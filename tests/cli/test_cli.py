"""The command line as a user meets it: the installed entry point, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from imagefunnel.market import defects
from imagefunnel.routing.passrates import PassRate, PassRateKey
from imagefunnel.store import Store
from imagefunnel.store.pass_rates import SqlPassRates

PORTRAITS = Path(__file__).parents[2] / "src" / "imagefunnel" / "market" / "assets" / "portraits"


def imagefunnel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )


def _routed(out: Path) -> list[tuple[str, str, bool]]:
    """Which request went where and passed, by request (completion order varies)."""
    found = json.loads((out / "results.json").read_text())
    # A request id is the job's id and the request's number: only the number repeats across jobs.
    picked = sorted(
        (c["request_id"].rsplit("-")[-1], c["provider"], c["passed"]) for c in found["candidates"]
    )
    return picked


def test_demo_runs_end_to_end_writes_outputs_and_repeats_itself(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = imagefunnel("demo", "--deliver", "3", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "DELIVERED" in done.stdout
    assert "cost per delivered image $" in done.stdout
    assert "by provider" in done.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["delivered"] == 3 and result["status"] == "delivered"
    assert (out / "report.html").stat().st_size > 10_000
    first = _routed(out)
    # What a run with other luck would have taught the store: the box that served every candidate
    # passes nothing. Run again into the same folder: learned pass rates must not steer the second run.
    (provider,) = {c[1] for c in first}
    store = Store(f"sqlite:///{out / 'imagefunnel.db'}")
    key = PassRateKey(provider, result["candidates"][0]["model"], "headshot")
    SqlPassRates(store.engine).save_pass_rate(PassRate(key, 1.0, 500.0, time.time()))
    store.close()
    again = imagefunnel("demo", "--deliver", "3", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "fresh store" in again.stdout
    # Same requests on the same providers with the same verdicts. The spend is not compared: the
    # self-hosted box bills the GPU seconds it measured, which vary with the machine's load.
    assert _routed(out) == first


def test_score_prints_each_dimension_and_fails_a_defect(tmp_path: Path) -> None:
    clean = PORTRAITS / "obama_1.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(clean)), cv2.COLOR_BGR2RGB)
    blurred = tmp_path / "blurred.png"
    cv2.imwrite(str(blurred), cv2.cvtColor(defects.blur(rgb, 1.0), cv2.COLOR_RGB2BGR))
    ok = imagefunnel("score", str(clean), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sharpness" in ok.stdout and "PASS" in ok.stdout
    bad = imagefunnel("score", "--json", str(blurred), cwd=tmp_path)
    assert bad.returncode == 1
    verdict = json.loads(bad.stdout)[0]
    assert not verdict["passed"]
    assert any(d["name"] == "sharpness" and not d["passed"] for d in verdict["dimensions"])


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_score_on_garbage_is_a_verdict_not_a_traceback(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    done = imagefunnel("score", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "decodable" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_invalid_spec_names_field_and_line_without_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nprompts: [a headshot]\nbudget_usd: 1\ndeliver: -3\n")
    done = imagefunnel("run", str(spec), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert "job.yaml:4:1: deliver: must be ≥ 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_image_file_is_a_clear_error(tmp_path: Path) -> None:
    done = imagefunnel("score", str(tmp_path / "nope.jpg"), cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read" in done.stderr
    assert "Traceback" not in done.stderr


def test_providers_list_health_quote_on_the_emulated_market(tmp_path: Path) -> None:
    listed = imagefunnel("providers", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in ("premium", "budget", "standard"):
        assert name in listed.stdout
    quoted = imagefunnel("providers", "quote", "--width", "1000", "--height", "1000", cwd=tmp_path)
    assert quoted.returncode == 0, quoted.stderr
    assert "$0.0350" in quoted.stdout, "premium lists $0.035/MP: one 1 MP image"
    health = imagefunnel("providers", "health", cwd=tmp_path)
    assert health.returncode == 0 and "up" in health.stdout


def test_providers_check_reports_an_unreachable_server(tmp_path: Path) -> None:
    done = imagefunnel("providers", "check", "http://127.0.0.1:9", cwd=tmp_path)
    assert done.returncode == 2
    assert "not usable" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


NATIVE_LOG_LINES = ("inference_feedback_manager", "XNNPACK delegate", "W0000", "absl::InitializeLog")


def test_native_model_logs_never_reach_the_terminal(tmp_path: Path) -> None:
    photo = str(PORTRAITS / "obama_1.jpg")
    scored = imagefunnel("score", photo, "--use-case", "headshot", cwd=tmp_path)
    cut = imagefunnel("cutout", photo, "--out", str(tmp_path / "cut"), cwd=tmp_path)  # other graphs
    for done in (scored, cut):
        assert done.returncode == 0, done.stdout + done.stderr
        for line in NATIVE_LOG_LINES:
            assert line not in done.stderr + done.stdout
