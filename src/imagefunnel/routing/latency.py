"""Latency of one (provider, model): an EWMA for "usually" and a ring of samples for the tail."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["LatencyStats"]


class LatencyStats:
    """EWMA plus quantiles over the last ``size`` samples.

    Quantiles sort the ring lazily (only when asked after a new sample), so recording is O(1) and a
    burst of routing decisions between two completions sorts at most once.
    """

    __slots__ = ("_alpha", "_min_samples", "_ring", "_sorted", "count", "ewma_s")

    def __init__(self, *, size: int = 128, alpha: float = 0.2, min_samples: int = 8) -> None:
        if size < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError("size must be ≥ 1 and alpha in (0, 1]")
        self._alpha = alpha
        self._min_samples = min_samples
        self._ring: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None
        self.count = 0
        self.ewma_s: float | None = None

    def add(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return  # a clock hiccup must not poison the estimate
        self.count += 1
        self._ring.append(seconds)
        self._sorted = None
        prev = self.ewma_s
        self.ewma_s = seconds if prev is None else prev + self._alpha * (seconds - prev)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of recent samples; ``None`` until there are enough to mean anything."""
        if len(self._ring) < self._min_samples:
            return None
        if self._sorted is None:
            self._sorted = sorted(self._ring)
        values = self._sorted
        index = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
        return values[index]
