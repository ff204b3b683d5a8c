"""The README's offline product-shot example does what it says."""

from __future__ import annotations

import json
from pathlib import Path

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
