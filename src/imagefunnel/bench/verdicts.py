"""Scorer verdicts without scoring: the truth label, calibrated by the measured scorer catch rate.

The simulated benchmark does not render and score 20,000 images per policy. Instead it measures,
once per run, how the real :class:`~imagefunnel.scoring.Scorer` judges real rendered market images
of each defect kind (and clean ones), and then passes a simulated candidate with exactly that
probability for its hidden label. The draw is seeded by the image's content, so the same image gets
the same verdict whichever policy bought it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from imagefunnel.errors import ImageError
from imagefunnel.imaging import decode_image
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import AssetLibrary, Truth, plan_image, render
from imagefunnel.market.scenario import Scenario
from imagefunnel.scoring import Scorer

__all__ = ["CLEAN", "ScorerCalibration", "VerdictModel", "calibrate_scorer", "scenario_defects"]

CLEAN = "clean"


@dataclass(frozen=True, slots=True)
class ScorerCalibration:
    """Per label (a defect kind or ``clean``): how many rendered samples the scorer rejected."""

    rejected: Mapping[str, int]
    samples: Mapping[str, int]
    width: int
    height: int
    seconds: float

    def reject_rate(self, label: str) -> float:
        n = self.samples.get(label, 0)
        if n == 0:
            return 0.0 if label == CLEAN else 1.0  # unmeasured defect: assume caught
        return self.rejected.get(label, 0) / n

    def p_pass(self, defect: Defect | None) -> float:
        return 1.0 - self.reject_rate(CLEAN if defect is None else defect.value)


def scenario_defects(scenario: Scenario) -> list[Defect]:
    """Every defect kind a scenario can produce (its mixes, plus black garbage)."""
    kinds = {Defect.BLACK}
    for profile in scenario.providers:
        if profile.defect_rate > 0:
            kinds.update(kind for kind, weight in profile.defect_mix.items() if weight > 0)
    return sorted(kinds, key=lambda kind: kind.value)


def calibrate_scorer(
    defects: Iterable[Defect],
    *,
    samples: int,
    width: int,
    height: int,
    seed: int = 0,
    scorer: Scorer | None = None,
    library: AssetLibrary | None = None,
) -> ScorerCalibration:
    """Render ``samples`` images per label with the market's generator and score them for real."""
    scorer = scorer or Scorer()
    library = library or AssetLibrary()
    started = time.perf_counter()
    rejected: dict[str, int] = {}
    counts: dict[str, int] = {}
    labels: list[Defect | None] = [None, *defects]
    for defect in labels:
        label = CLEAN if defect is None else defect.value
        counts[label] = samples
        rejected[label] = 0
        for i in range(samples):
            rng = np.random.default_rng([seed, i, len(label)])
            truth = plan_image(
                provider="calibration",
                library=library,
                width=width,
                height=height,
                seed=seed * 100_003 + i,
                image_format="png",
                defect_rate=0.0 if defect is None else 1.0,
                defect_mix={defect or Defect.BLUR: 1.0},
                rng=rng,
            )
            rejected[label] += not _passes(scorer, render(truth, library))
    return ScorerCalibration(rejected, counts, width, height, time.perf_counter() - started)


def _passes(scorer: Scorer, data: bytes) -> bool:
    try:
        image = decode_image(data)
    except ImageError:
        return scorer.score_bytes(data).passed
    return scorer.score(image).passed


class VerdictModel:
    """Pass/fail for a simulated candidate from its truth label and the calibration."""

    def __init__(self, calibration: ScorerCalibration, *, seed: int = 0) -> None:
        self.calibration = calibration
        self._seed = seed

    def passed(self, truth: Truth) -> bool:
        if truth.garbage and truth.defect is Defect.TRUNCATED:
            return False  # never reaches a scorer: the adapter refuses bytes that do not decode
        draw = derive_rng(
            "verdict", self._seed, truth.provider, truth.source, truth.seed, str(truth.defect), truth.strength
        ).random()
        return bool(draw < self.calibration.p_pass(truth.defect))
