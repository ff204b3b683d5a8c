"""Fixtures shared by the market tests."""

from __future__ import annotations

import pytest

from imagefunnel.market.images import AssetLibrary


@pytest.fixture(scope="module")
def library() -> AssetLibrary:
    """The market's bundled assets, loaded once per test module."""
    return AssetLibrary()
