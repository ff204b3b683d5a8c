"""The README's offline product-shot example does what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import imagefunnel.spec
from imagefunnel.cli.app import app

EXAMPLES = Path(imagefunnel.spec.__file__).parent / "examples"


def test_product_example_passes_the_shot_and_fails_the_off_centre_one() -> None:
    images = [str(EXAMPLES / "product-shot.jpg"), str(EXAMPLES / "product-off-centre.jpg")]
    result = CliRunner().invoke(
        app, ["score", *images, "--spec", str(EXAMPLES / "product-demo.yaml"), "--json"]
    )
    assert result.exit_code == 1  # one of them fails
    verdicts = {Path(v["image"]).name: v for v in json.loads(result.output)}
    assert verdicts["product-shot.jpg"]["passed"]
    failed = [d["name"] for d in verdicts["product-off-centre.jpg"]["dimensions"] if not d["passed"]]
    assert failed == ["product_centering"]


@pytest.mark.slow
def test_the_ad_creative_example_runs_offline_and_delivers_on_brand_shots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "ad-creative-demo.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    done = json.loads((out / "results.json").read_text())
    assert done["delivered"] == 2
    delivered = [c for c in done["candidates"] if c["delivered"]]
    for candidate in delivered:
        scored = {d["dimension"]: d for d in candidate["dimensions"]}
        # The market drew a product shot: on the palette, the headline's band left calm, no text.
        assert {"off_palette", "palette_presence", "safe_area_busyness", "text_area"} <= set(scored)
        assert all(d["passed"] for d in scored.values())
    assert len(list((out / "delivered").glob("*.png"))) == 2
