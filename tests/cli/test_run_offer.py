"""`imagefunnel run` refuses provider names and models that the market does not offer, before buying."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(spec_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nprompts: [a headshot]\nbudget_usd: 1\ndeliver: 1\n" + spec_text)
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", "run", str(spec), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("spec_text", "message"),
    [
        ("providers: {deny: [expensive-provider]}\n", "unknown provider 'expensive-provider'"),
        # background-removal: the self-hosted remover, which runs next to any market
        (
            "model: sdxl\n",
            "no provider serves 'sdxl'; models served: background-removal, fal-ai/flux-pro/v1.1",
        ),
    ],
)
def test_a_name_the_market_does_not_offer_is_refused_before_anything_is_bought(
    spec_text: str, message: str, tmp_path: Path
) -> None:
    done = run(spec_text, tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "imagefunnel.db").exists()  # no job was started
