"""Thresholds from labelled data: per dimension, the threshold that catches the most labelled defects
while rejecting at most a given share of the clean images.

Real clean photos are soft, side-lit or compressed more often than the crisp press portraits the
defaults were tuned on, so fixed thresholds can reject many of them. Calibration moves a threshold
only when that helps on the set: a default that already meets the false-reject budget and catches
as many defects as any threshold within it is kept. Otherwise the threshold goes to the middle of
the gap between the defect closest to the clean images that can still be caught and the clean image
closest to that defect (the widest margin both ways), or, with no defects to catch, to the most lenient edge of the clean images it
must let through. Values that are not a number fail at any threshold and use up the budget first; a
dimension that cannot meet the budget gets its most lenient threshold and is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imagefunnel.evaluation.metrics import ScoredImage, rejects
from imagefunnel.scoring import DimensionInfo, Direction

__all__ = ["Calibrated", "calibrate", "thresholds_yaml"]

_DIGITS = 6  # significant digits kept, rounded towards the lenient side


@dataclass(frozen=True, slots=True)
class Calibrated:
    """One dimension's calibrated threshold, and what it does on the set compared with the default."""

    name: str
    default: float
    threshold: float
    clean: int
    false_rejects: int
    default_false_rejects: int
    positives: int
    caught: int
    default_caught: int
    met: bool  # whether the false-reject budget could be met


def _lenient_round(value: float, direction: Direction) -> float:
    if value == 0.0 or not math.isfinite(value):
        return value
    scale = 10.0 ** (_DIGITS - 1 - math.floor(math.log10(abs(value))))
    rounded = (
        math.ceil(value * scale) if direction is Direction.LOWER_IS_BETTER else math.floor(value * scale)
    )
    return float(rounded / scale)


def _fails(values: Sequence[float], threshold: float, direction: Direction) -> int:
    return sum(rejects(v, threshold, direction) for v in values)


def _strict_edge(clean: Sequence[float], allowed: int, info: DimensionInfo) -> float | None:
    """The strictest threshold that rejects at most ``allowed`` of ``clean``; None if none does."""
    finite = sorted(v for v in clean if not math.isnan(v))
    allowed -= len(clean) - len(finite)  # NaN fails at any threshold
    if allowed < 0 or not finite:
        return None
    allowed = min(allowed, len(finite) - 1)
    if info.direction is Direction.LOWER_IS_BETTER:  # fails above t: `allowed` values may exceed it
        return finite[len(finite) - 1 - allowed]
    return finite[allowed]  # fails below t


def _threshold(
    clean: Sequence[float], positives: Sequence[float], allowed: int, info: DimensionInfo
) -> tuple[float, bool]:
    lo, hi = info.value_range
    lower = info.direction is Direction.LOWER_IS_BETTER
    edge = _strict_edge(clean, allowed, info)
    if edge is None:
        return (hi if lower else lo), False
    default = info.default_threshold
    best = _fails(positives, edge, info.direction)
    if (
        _fails(clean, default, info.direction) <= allowed
        and _fails(positives, default, info.direction) >= best
    ):
        return default, True
    # The positives caught at the edge; the least extreme of them bounds how lenient t may go.
    caught = [v for v in positives if rejects(v, edge, info.direction) and not math.isnan(v)]
    if caught:
        nearest = min(caught) if lower else max(caught)
        # The gap runs from the clean value closest to that defect (on the clean side) to the defect.
        inside = [v for v in clean if not math.isnan(v) and (v < nearest if lower else v > nearest)]
        near_clean = (max(inside) if lower else min(inside)) if inside else edge
        middle = _lenient_round((near_clean + nearest) / 2, info.direction)
        threshold = middle if rejects(nearest, middle, info.direction) else (near_clean + nearest) / 2
    else:
        threshold = _lenient_round(edge, info.direction)
    return min(hi, max(lo, threshold)), True


def calibrate(
    scored: Sequence[ScoredImage], *, infos: Mapping[str, DimensionInfo], max_false_reject: float
) -> list[Calibrated]:
    """A threshold per dimension of ``infos`` measured on the set's clean images."""
    if not 0.0 <= max_false_reject < 1.0:
        raise ValueError(f"max_false_reject must be in [0, 1), got {max_false_reject}")
    out = []
    for name, info in infos.items():
        clean = [item.values[name] for item in scored if item.label.clean and name in item.values]
        if not clean:
            continue
        positives = [
            item.values[name] for item in scored if name in item.label.expect and name in item.values
        ]
        allowed = math.floor(max_false_reject * len(clean) + 1e-9)
        threshold, met = _threshold(clean, positives, allowed, info)
        out.append(
            Calibrated(
                name=name,
                default=info.default_threshold,
                threshold=threshold,
                clean=len(clean),
                false_rejects=_fails(clean, threshold, info.direction),
                default_false_rejects=_fails(clean, info.default_threshold, info.direction),
                positives=len(positives),
                caught=_fails(positives, threshold, info.direction),
                default_caught=_fails(positives, info.default_threshold, info.direction),
                met=met,
            )
        )
    return out


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole}" if whole else "n/a"


def thresholds_yaml(calibrated: Sequence[Calibrated], *, max_false_reject: float, origin: str) -> str:
    """A YAML document whose ``thresholds:`` mapping can be pasted into (or merged with) a job spec."""
    lines = [
        f"# imagefunnel calibrate: thresholds that reject at most {max_false_reject:.1%} of the clean images",
        f"# of {origin}. Use as a job spec's `thresholds:`. Per dimension: the default, clean images",
        "# rejected, and defects caught (of those labelled for it), at the default -> at this threshold.",
        "thresholds:",
    ]
    for c in calibrated:
        note = "" if c.met else "  NOT MET: even the most lenient threshold rejects more"
        lines.append(
            f"  {c.name}: {c.threshold!r}  # default {c.default:g}; clean rejected "
            f"{_pct(c.default_false_rejects, c.clean)} -> {_pct(c.false_rejects, c.clean)}; caught "
            f"{_pct(c.default_caught, c.positives)} -> {_pct(c.caught, c.positives)}{note}"
        )
    return "\n".join(lines) + "\n"
