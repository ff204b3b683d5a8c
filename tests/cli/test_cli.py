"""The command line as a user meets it: the installed entry point, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from imagefunnel.market import defects

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


def test_demo_runs_end_to_end_and_writes_outputs(tmp_path: Path) -> None:
    done = imagefunnel("demo", "--deliver", "3", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "DELIVERED" in done.stdout
    assert "cost per delivered image $" in done.stdout
    assert "by provider" in done.stdout
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["delivered"] == 3 and result["status"] == "delivered"
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


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
