"""What scoring says about one image: a value per dimension, judged against its threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DimensionScore", "Direction", "Verdict"]


class Direction(StrEnum):
    """Which way a dimension's value improves. Declared by every dimension: never defaulted."""

    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"

    def passes(self, value: float, threshold: float) -> bool:
        """A value on the threshold passes; a value that is not a number never does."""
        if math.isnan(value):
            return False
        if self is Direction.HIGHER_IS_BETTER:
            return value >= threshold
        return value <= threshold

    def comparison(self, passed: bool) -> str:
        """The operator that relates value to threshold in a reason, e.g. ``<`` for a failed minimum."""
        if self is Direction.HIGHER_IS_BETTER:
            return "≥" if passed else "<"
        return "≤" if passed else ">"


@dataclass(frozen=True, slots=True)
class DimensionScore:
    """One dimension measured on one image, with the threshold it was judged against."""

    name: str
    tier: int
    value: float
    threshold: float
    direction: Direction
    passed: bool
    reason: str

    @classmethod
    def judge(
        cls,
        *,
        name: str,
        tier: int,
        value: float,
        threshold: float,
        direction: Direction,
        fail_label: str,
        decimals: int = 3,
    ) -> DimensionScore:
        """Compare ``value`` with ``threshold`` and write the one-line reason."""
        passed = direction.passes(value, threshold)
        if math.isnan(value):
            reason = f"{name} could not be measured (not a number)"
        else:
            op = direction.comparison(passed)
            verdict = "ok" if passed else f"({fail_label})"
            reason = f"{name} {value:.{decimals}f} {op} {threshold:.{decimals}f} {verdict}"
        return cls(name, tier, float(value), float(threshold), direction, passed, reason)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Pass/fail for one image. ``skipped`` names dimensions that were not measured.

    A dimension is skipped when an earlier one already failed (cheap-first early reject), or when the
    scoring context lacks an input it needs (say, reference photos).
    """

    passed: bool
    scores: tuple[DimensionScore, ...]
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.scores:
            raise ValueError("a verdict needs at least one measured dimension")
        if self.passed != all(s.passed for s in self.scores):
            raise ValueError("Verdict.passed must be True exactly when every score passed")

    @classmethod
    def of(cls, scores: tuple[DimensionScore, ...], skipped: tuple[str, ...] = ()) -> Verdict:
        return cls(passed=all(s.passed for s in scores), scores=scores, skipped=skipped)

    @property
    def failed(self) -> tuple[DimensionScore, ...]:
        """The failing scores, in the order they were measured."""
        return tuple(s for s in self.scores if not s.passed)

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per failing dimension, e.g. ``sharpness 0.031 < 0.080 (blurry)``."""
        return tuple(s.reason for s in self.failed)

    def get(self, name: str) -> DimensionScore | None:
        """The score of dimension ``name``, or None if it was skipped or not requested."""
        return next((s for s in self.scores if s.name == name), None)

    def value(self, name: str) -> float:
        """The measured value of ``name``; KeyError when it was not measured."""
        score = self.get(name)
        if score is None:
            raise KeyError(f"{name!r} was not measured (skipped: {', '.join(self.skipped) or 'none'})")
        return score.value
