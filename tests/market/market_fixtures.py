"""Helpers shared by the market tests (import them; fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from imagefunnel.market import ProviderProfile

FAL_MODEL = "fal-ai/flux/dev"


class Clock:
    """A hand-driven clock for ``Market(clock=...)``: time moves only when a test sets ``t``."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fal_profile(name: str, *, queue_s: tuple[float, float] = (0, 0), **overrides: Any) -> ProviderProfile:
    """A fal-protocol provider of ``FAL_MODEL`` (and its ``fal-ai/flux`` alias) at $0.025/MP that
    queues for ``queue_s`` and processes for 10 scenario seconds; ``overrides`` replace any field."""
    base: dict[str, Any] = {
        "name": name,
        "protocol": "fal",
        "models": [FAL_MODEL, "fal-ai/flux"],
        "price_usd_per_mp": 0.025,
        "queue_s": list(queue_s),
        "processing_s": [10, 10],
    }
    return ProviderProfile.model_validate(base | overrides)
