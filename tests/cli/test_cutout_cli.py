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


def test_cutout_against_apis_from_a_providers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagefunnel.market.cutout_app import CutoutServer
    from imagefunnel.market.cutout_profile import CutoutApiProfile

    monkeypatch.setenv("REMOVE_BG_API_KEY", "k")
    with CutoutServer([CutoutApiProfile(name="api", usd_per_image=0.05, processing_s=(0.0, 0.01))]) as apis:
        config = tmp_path / "providers.yaml"
        config.write_text(
            "providers:\n  - {name: api, protocol: removebg, models: [background-removal], "
            f"base_url: '{apis.base_url('api')}', price: {{unit: image, usd: 0.05}}}}\n"
        )
        result = CliRunner().invoke(
            app, ["cutout", str(PHOTO), "--out", str(tmp_path), "--mode", "api", "--providers", str(config)]
        )
    assert result.exit_code == 0, result.output
    assert "1/1 delivered" in result.output and "0.05000" in result.output
    no_price = tmp_path / "bad.yaml"
    no_price.write_text("providers:\n  - {name: api, protocol: removebg, models: [background-removal]}\n")
    bad = CliRunner().invoke(
        app, ["cutout", str(PHOTO), "--out", str(tmp_path), "--providers", str(no_price)]
    )
    assert bad.exit_code != 0 and "price per image" in str(bad.exception)
