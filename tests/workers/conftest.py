"""The emulated market the worker tests buy from: one clean, fast fal provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer

MODEL = "fal-ai/flux/dev"


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    scenario = Scenario.model_validate(
        {
            "name": "workers",
            "seed": 5,
            "providers": [
                {
                    "name": "clean",
                    "protocol": "fal",
                    "models": [MODEL],
                    "processing_s": [0.01, 0.02],
                    "price_usd_per_mp": 0.02,
                }
            ],
        }
    )
    with MarketServer(scenario) as server:
        yield server
