from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from imagefunnel.cli.demo import demo_spec, market_providers
from imagefunnel.cli.runner import RunOutputs, run_job
from imagefunnel.market.server import MarketServer


@dataclass(frozen=True)
class DemoRun:
    outputs: RunOutputs
    out_dir: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """A real small job against the emulated market: the report is rendered from real results."""
    out = tmp_path_factory.mktemp("demo")
    spec = demo_spec().model_copy(update={"deliver": 4, "max_candidates": 20, "seed": 13})
    with MarketServer("demo") as market:
        outputs = run_job(
            spec, market_providers(market, spec.model), out_dir=out, console=Console(quiet=True)
        )
    return DemoRun(outputs, out)


def chromium_path() -> str | None:
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("IMAGEFUNNEL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (IMAGEFUNNEL_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium-headless-shell)")
    return path
