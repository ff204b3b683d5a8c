from pathlib import Path

from typer.testing import CliRunner

from imagefunnel.cli.bench import bench_app

SCENARIO = """
name: tiny
seed: 3
providers:
  - {name: cheap, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.01, processing_s: [3, 4],
     defect_rate: 0.3, defect_mix: {blur: 1}}
  - {name: good, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.015, processing_s: [3, 4],
     defect_rate: 0.05, defect_mix: {blur: 1}}
"""


def test_bench_quote_prints_its_tables_and_writes_its_block(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    doc = tmp_path / "benchmarks.md"
    args = ["quote", "--scenario", str(scenario), "--jobs", "3", "--start", "warm", "--simulations", "100"]
    result = CliRunner().invoke(bench_app, [*args, "--calibration-samples", "1", "--write", str(doc)])
    assert result.exit_code in (0, 1), result.output  # 1: a target missed, which 3 jobs may well do
    assert "| tiny | warm | 3 |" in result.output
    text = doc.read_text(encoding="utf-8")
    assert (
        "## Quote calibration" in text and "<!-- bench quote -->" in text and "<!-- /bench quote -->" in text
    )
    assert "`imagefunnel bench quote" in text  # the command that made it


def test_an_unknown_start_is_a_clean_error() -> None:
    result = CliRunner().invoke(bench_app, ["quote", "--start", "lukewarm"])
    assert result.exit_code == 2
    assert "lukewarm" in result.output
