"""``devset``, ``eval``, ``calibrate`` and ``bench scoring``, driven as typer commands.

The commands are registered here exactly as ``cli/app.py`` registers them, so that these tests do
not depend on the wiring; the real entry point's tests live in ``test_cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from imagefunnel.cli.bench import bench_app
from imagefunnel.cli.eval import calibrate_cmd, devset_cmd, eval_cmd
from imagefunnel.errors import ImageFunnelError
from imagefunnel.evaluation import DevSetError, load_manifest
from imagefunnel.scoring import Scorer

app = typer.Typer(pretty_exceptions_enable=False)
app.command("devset")(devset_cmd)
app.command("eval")(eval_cmd)
app.command("calibrate")(calibrate_cmd)
app.add_typer(bench_app, name="bench")  # cli/bench.py's group, where `bench scoring` lives

RUNNER = CliRunner()
CLEAN = 13  # clean variants of luispedro (no plain backdrop to pattern: patterned_backdrop skipped)
SMALL = [
    "--photo",
    "luispedro",
    "--strength",
    "1",
    "--defect",
    "blur_gaussian",
    "--defect",
    "caption",
    "--defect",
    "truncated",
]


def run(*args: str) -> str:
    result = RUNNER.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def devset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("devset") / "set"
    out = run("devset", str(folder), *SMALL)
    assert f"wrote {CLEAN + 3} images ({CLEAN} clean) from 1 photos" in out, out  # 3 defects
    return folder


def test_eval_prints_recall_false_rejects_and_confusion(devset: Path) -> None:
    out = run("eval", str(devset), "--use-case", "generic")
    assert "Per dimension" in out and "Confusion" in out and "per source photo" in out
    assert "text_area" in out and "100.0% (1/1)" in out  # the overlay, caught
    assert "clean images rejected by any dimension: 0.0%" in out
    assert "Leave one person out" in out and "held-out person" in out


def test_eval_json_has_every_part(devset: Path) -> None:
    data = json.loads(run("eval", str(devset), "--use-case", "generic", "--json"))
    dims = {d["name"]: d for d in data["dimensions"]}
    assert dims["sharpness"]["recall"] == 1.0 and dims["decodable"]["recall"] == 1.0
    assert dims["text_chars"]["false_reject_rate"] == 0.0
    assert data["confusion"]["truncated"] == {"decodable": 1}
    assert data["false_rejects_per_source"] == {"luispedro": {"clean": CLEAN, "rejected": []}}
    held = data["leave_one_person_out"]
    assert held["in_sample"]["clean_false_reject"]["whole"] == CLEAN
    assert set(held["people"]) == {"Luis Pedro Coelho"} and len(held["held_out"]["hard_recall"]["ci95"]) == 2


def test_calibrate_writes_thresholds_that_eval_and_a_scorer_accept(devset: Path, tmp_path: Path) -> None:
    target = tmp_path / "thresholds.yaml"
    out = run(
        "calibrate", str(devset), "--max-false-reject", "0.05", "--use-case", "generic", "--out", str(target)
    )
    assert f"wrote {target}" in out
    thresholds = yaml.safe_load(target.read_text())["thresholds"]
    assert {"sharpness", "noise", "text_area", "decodable"} <= set(thresholds)
    Scorer(thresholds=thresholds)  # valid names and ranges
    data = json.loads(
        run("eval", str(devset), "--use-case", "generic", "--thresholds", str(target), "--json")
    )
    assert all(d["false_reject_rate"] <= 0.05 for d in data["dimensions"])


def test_bad_inputs_are_our_errors(tmp_path: Path, devset: Path) -> None:
    result = RUNNER.invoke(app, ["eval", str(tmp_path)])
    assert isinstance(result.exception, DevSetError)  # app.main prints it as one red line
    bad = tmp_path / "bad.yaml"
    bad.write_text("thresholds: [1, 2]\n")
    result = RUNNER.invoke(app, ["eval", str(devset), "--thresholds", str(bad)])
    assert isinstance(result.exception, ImageFunnelError) and "dimension: number" in str(result.exception)
    result = RUNNER.invoke(app, ["calibrate", str(devset), "--max-false-reject", "1.5"])
    assert result.exit_code == 2 and "must be in [0, 1)" in result.output


def test_devset_labels_match_the_files(devset: Path) -> None:
    manifest = load_manifest(devset)
    assert {i.file for i in manifest.images} | {"labels.json", "LICENSES.md"} == {
        p.name for p in devset.iterdir()
    }


def test_bench_scoring_reports_throughput_against_targets() -> None:
    out = run("bench", "scoring", "--images", "2", "--workers", "1", "--use-case", "generic", "--no-quality")
    assert "x decode (target ≤ 3x:" in out
    assert "full cascade from bytes (12 dimensions, score_all):" in out and "target ≥ 10" in out
    assert "`imagefunnel --help` start-up:" in out
