from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.store import BlobStore, Store


def scenario(*providers: dict[str, object], seed: int = 3) -> Scenario:
    base = {"protocol": "fal", "models": ["fal-ai/flux/dev"], "processing_s": [0.01, 0.03]}
    return Scenario.model_validate(
        {"name": "test", "seed": seed, "providers": [{**base, **p} for p in providers]}
    )


@pytest.fixture(name="scenario")
def scenario_fixture() -> object:
    return scenario


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def market_factory() -> Iterator[object]:
    started: list[MarketServer] = []

    def start(s: Scenario) -> MarketServer:
        server = MarketServer(s)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
