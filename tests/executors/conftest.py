"""Images and the headshot scorer recipe the executor tests score (same everywhere: same verdicts)."""

from __future__ import annotations

import pytest
from executor_fixtures import executor_images, headshot_config

from imagefunnel.executors import ScorerConfig


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return executor_images()


@pytest.fixture(scope="module")
def config() -> ScorerConfig:
    return headshot_config()
