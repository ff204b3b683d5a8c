"""Session fixtures for the scoring tests."""

from __future__ import annotations

import pytest
from scoring_fixtures import HUMANS, Rgb, load_rgb, mild_variants


@pytest.fixture(scope="session")
def portraits() -> dict[str, Rgb]:
    """Every fixture photo, decoded once: the human portraits and the dog."""
    return {name: load_rgb(name) for name in (*HUMANS, "dog_donna")}


@pytest.fixture(scope="session")
def clean_variants(portraits: dict[str, Rgb]) -> dict[str, dict[str, Rgb]]:
    """Each human portrait's mild variants (brightness ±15%, crops, JPEG q80, half size)."""
    return {photo: mild_variants(portraits[photo]) for photo in HUMANS}
