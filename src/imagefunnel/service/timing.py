"""Where a request's time went, as a ``Server-Timing`` header (W3C Server Timing).

Clients (and ``imagefunnel bench service``) read it to tell the scoring itself from what the
service adds around it: an evaluation's response carries ``read`` (the upload), ``decode``, ``score``,
``store`` (blobs and the database) and ``total`` (the handler's own time), in milliseconds; ``refs``
(checking reference photos, keeping those sent) only when the evaluation has some.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SERVER_TIMING", "Spans", "parse_server_timing"]

SERVER_TIMING = "Server-Timing"


class Spans:
    """Named durations of one request; a name timed twice adds up. Not shared between requests."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._ms: dict[str, float] = {}

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._ms[name] = self._ms.get(name, 0.0) + (time.perf_counter() - started) * 1000

    def header(self) -> str:
        """The header's value, with ``total`` measured from this object's creation until now."""
        total = (time.perf_counter() - self._started) * 1000
        return ", ".join(f"{name};dur={ms:.3f}" for name, ms in [*self._ms.items(), ("total", total)])


def parse_server_timing(value: str) -> dict[str, float]:
    """``{"name": milliseconds}`` from a ``Server-Timing`` value; entries without ``dur`` are left out."""
    out: dict[str, float] = {}
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "dur" and name:
                try:
                    out[name] = float(number.strip().strip('"'))
                except ValueError:
                    continue
    return out
