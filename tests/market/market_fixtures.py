"""Helpers shared by the market tests (import them; fixtures live in conftest.py)."""

from __future__ import annotations


class Clock:
    """A hand-driven clock for ``Market(clock=...)``: time moves only when a test sets ``t``."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t
