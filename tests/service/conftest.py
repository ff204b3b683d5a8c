"""A service on each database, against a small fast emulated market, with two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_fixtures import MODEL, Service, ServiceFactory, fast_settings

from imagefunnel.cli.demo import market_providers
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.service import create_app


@pytest.fixture(scope="session")
def market() -> Iterator[MarketServer]:
    scenario = Scenario.model_validate(
        {
            "name": "service-tests",
            "seed": 7,
            "providers": [
                {
                    "name": "quick",
                    "protocol": "fal",
                    "models": [MODEL],
                    "processing_s": [0.02, 0.05],
                    "price_usd_per_mp": 0.02,
                    "defect_rate": 0.5,  # rejects for the pages and the browser test to show
                    "defect_mix": {"blank": 1.0},
                }
            ],
        }
    )
    with MarketServer(scenario) as server:
        yield server


@pytest.fixture
def make_service(market: MarketServer, store_url: str, tmp_path: Path) -> Iterator[ServiceFactory]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> Service:
        settings = fast_settings(tmp_path, store_url, **overrides)
        app = create_app(
            settings,
            providers=lambda s: market_providers(market, s.model),
            catalog=market_providers(market, MODEL),
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        tenancy = app.state.runtime.tenancy
        a = tenancy.create_key("tenant-a").secret
        b = tenancy.create_key("tenant-b").secret
        return Service(client, {"Authorization": f"Bearer {a}"}, {"X-API-Key": b})

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def service(make_service: ServiceFactory) -> Service:
    return make_service()
