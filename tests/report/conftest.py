from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from imagefunnel.cli.demo import demo_spec, market_providers
from imagefunnel.cli.runner import JobSource, RunOutputs, open_store, run_job
from imagefunnel.errors import ProviderUnavailable
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.spec import JobSpec
from imagefunnel.store.models import LedgerRow
from imagefunnel.testing import MockProvider


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
            spec, market_providers(market, spec.model), source=JobSource(out), console=Console(quiet=True)
        )
    return DemoRun(outputs, out)


@dataclass(frozen=True)
class FailedRun:
    spec: JobSpec
    outputs: RunOutputs
    out_dir: Path
    ledger: list[LedgerRow]


def _outage(request: GenerationRequest) -> Generation:
    raise ProviderUnavailable("503 service unavailable", provider="down-host")


@pytest.fixture(scope="session")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> FailedRun:
    """A real job whose only provider fails every request: nothing is delivered."""
    out = tmp_path_factory.mktemp("failed")
    spec = JobSpec(
        name="doomed",
        use_case="generic",
        prompts=["a red apple on a table"],
        model="mock-model",
        deliver=3,
        budget_usd=0.5,
        deadline_s=5,
    )
    provider = MockProvider(_outage, name="down-host")
    outputs = run_job(spec, [provider], source=JobSource(out), console=Console(quiet=True))
    store = open_store(out)
    try:
        ledger = list(store.ledger(outputs.result.job_id))
    finally:
        store.close()
    return FailedRun(spec, outputs, out, ledger)


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
