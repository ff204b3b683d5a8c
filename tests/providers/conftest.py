"""Fixtures shared by the adapter tests: each test module declares its own ``SCENARIO`` and
``TIME_FACTOR``, and gets one emulated market for the module plus a fresh HTTP client per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from imagefunnel.market.server import MarketServer


@pytest.fixture(scope="module")
def market(request: pytest.FixtureRequest) -> Iterator[MarketServer]:
    module = request.module
    with MarketServer(module.SCENARIO, time_factor=module.TIME_FACTOR) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http
