"""Shared by the benchmark tests: a scorer calibration for markets whose defects are always caught."""

from __future__ import annotations

from imagefunnel.bench.verdicts import CLEAN, ScorerCalibration


def catching(*labels: str, side: int = 1024, samples: int = 10) -> ScorerCalibration:
    """Clean images always pass and every one of ``labels`` is always rejected (``samples`` of each)."""
    return ScorerCalibration(
        {CLEAN: 0, **dict.fromkeys(labels, samples)},
        {CLEAN: samples, **dict.fromkeys(labels, samples)},
        side,
        side,
        0.0,
    )
