"""``imagefunnel run``, ``resume``, ``submit`` and ``worker`` of the background-removal example spec,
offline: the self-hosted segmentation model and the ``bg-removal`` market's cutout APIs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import imagefunnel.spec
from imagefunnel.cli.app import app
from imagefunnel.store import Store

pytest.importorskip("mediapipe")
EXAMPLE = Path(imagefunnel.spec.__file__).parent / "examples" / "bg-removal-demo.yaml"


def test_run_delivers_an_rgba_cutout_and_resume_finds_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ran = CliRunner().invoke(app, ["run", str(EXAMPLE), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    # No --market given: a background-removal job runs on the market with cutout APIs.
    started = re.search(r"job (\w+) started: .* --market bg-removal", ran.output)
    assert started is not None, ran.output
    cutout = Image.open(out / "delivered" / "01.png")
    assert (cutout.format, cutout.mode) == ("PNG", "RGBA")
    result = json.loads((out / "results.json").read_text())
    assert (result["status"], result["delivered"]) == ("delivered", 1)
    [candidate] = [c for c in result["candidates"] if c["delivered"]]
    assert candidate["provider"] == "local-cutout"  # cheapest per accepted cutout, and it passed
    assert {d["dimension"] for d in candidate["dimensions"]} >= {"edge_alignment", "mask_holes"}
    charged = sum(p["charged_usd"] for p in result["providers"])
    assert result["spent_usd"] == pytest.approx(charged) and 0 < charged < 0.01

    resumed = CliRunner().invoke(app, ["resume", started.group(1), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert "DELIVERED" in resumed.output


def test_run_with_a_providers_file_uses_its_self_hosted_remover(tmp_path: Path) -> None:
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        "providers:\n  - {name: box-cutout, protocol: segmentation, models: [background-removal],"
        " price: {unit: gpu_second, usd_per_hour: 0.40}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    ran = CliRunner().invoke(app, ["run", str(EXAMPLE), "--providers", str(providers), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    result = json.loads((out / "results.json").read_text())
    assert [(p["provider"], p["passed"]) for p in result["providers"]] == [("box-cutout", 1)]
    assert Image.open(out / "delivered" / "01.png").mode == "RGBA"


@pytest.mark.slow
def test_a_worker_runs_a_submitted_background_removal_job(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    submitted = CliRunner().invoke(app, ["submit", str(EXAMPLE), "--store", store])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.split()[0]
    # The worker as it is deployed: a process of its own.
    command = ["worker", "--store", store, "--market", "bg-removal", "--until-done"]
    worked = subprocess.run(
        [sys.executable, "-m", "imagefunnel", *command],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert f"job {job_id} delivered: 1 of 1 passed" in worked.stdout
    opened = Store(store)
    try:
        [delivered] = [c for c in opened.candidates(job_id) if c.delivered]
        assert delivered.content_type == "image/png"
        assert opened.spent_usd(job_id) == pytest.approx(
            sum(row.charged_usd or 0.0 for row in opened.ledger(job_id))
        )
    finally:
        opened.close()
