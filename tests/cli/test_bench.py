from pathlib import Path

from typer.testing import CliRunner

from imagefunnel.cli.bench import bench_app

SCENARIO = """
name: tiny
seed: 3
providers:
  - {name: premium, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.035, processing_s: [3, 4],
     defect_rate: 0.3, defect_mix: {blur: 1}}
  - {name: cheap, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.01, processing_s: [3, 4],
     defect_rate: 0.8, defect_mix: {blur: 1}}
  - {name: good, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.015, processing_s: [3, 4],
     defect_rate: 0.05, defect_mix: {blur: 1}}
"""


def test_bench_routing_prints_every_policy_and_writes_its_section(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    doc = tmp_path / "benchmarks.md"
    args = ["routing", "--scenario", str(scenario), "--jobs", "2", "--deliver", "5", "--no-litellm"]
    args += ["--e2e-jobs", "0", "--decisions", "0", "--calibration-samples", "1", "--workers", "1"]
    result = CliRunner().invoke(bench_app, [*args, "--write", str(doc)])
    assert result.exit_code == 0, result.output
    for name in ("single", "round_robin", "cheapest_per_call", "cost_per_accepted", "oracle"):
        assert name in result.output
    assert "cost per delivered vs `single`" in result.output
    text = doc.read_text(encoding="utf-8")
    assert "## Routing" in text and "### Scenario `tiny`" in text


def test_unknown_scenario_is_a_clean_error() -> None:
    result = CliRunner().invoke(bench_app, ["routing", "--scenario", "nope", "--no-litellm"])
    assert result.exit_code != 0
    assert "unknown scenario" in str(result.exception)
