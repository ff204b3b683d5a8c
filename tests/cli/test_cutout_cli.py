from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import imagefunnel.market
from imagefunnel.cli.app import app
from imagefunnel.imaging import decode_image

pytest.importorskip("mediapipe")
PHOTO = Path(imagefunnel.market.__file__).parent / "assets" / "portraits" / "biden.jpg"


def test_cutout_writes_a_scored_rgba_cutout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cutout", str(PHOTO), "--out", str(tmp_path), "--mode", "self-hosted"])
    assert result.exit_code == 0, result.output
    assert "1/1 delivered" in result.output
    assert decode_image((tmp_path / "biden.png").read_bytes()).alpha is not None


def test_cutout_refuses_a_missing_photo_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cutout", str(tmp_path / "nope.jpg"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no such photo" in str(result.exception)
