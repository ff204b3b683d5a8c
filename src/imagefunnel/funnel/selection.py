"""Ranking passed candidates and spotting near-duplicates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from imagefunnel.scoring import Verdict

DUPLICATE_MAX_DISTANCE = 4  # of 64 phash bits: re-encodes and tiny shifts, not a new pose or crop


def perceptual_hash(rgb: NDArray[np.uint8]) -> str:
    return str(imagehash.phash(Image.fromarray(rgb)))


def find_duplicate(phash: str, seen: Iterable[tuple[int, str]]) -> int | None:
    """The id of an earlier candidate whose hash is within ``DUPLICATE_MAX_DISTANCE``, if any."""
    mine = imagehash.hex_to_hash(phash)
    for candidate_id, other in seen:
        if mine - imagehash.hex_to_hash(other) <= DUPLICATE_MAX_DISTANCE:
            return candidate_id
    return None


def quality(verdict: Verdict) -> float:
    """Mean normalised margin over the scored dimensions: how comfortably a candidate passes."""
    margins: list[float] = []
    for score in verdict.scores:
        if score.value is None or score.threshold is None:
            continue
        scale = max(abs(score.threshold), 1e-6)
        higher = score.direction.value.startswith("higher")
        margin = (
            (score.value - score.threshold) / scale if higher else (score.threshold - score.value) / scale
        )
        margins.append(float(np.clip(margin, -1.0, 3.0)))
    return float(np.mean(margins)) if margins else 0.0


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate_id: int
    quality: float


def best_k(passed: Sequence[Ranked], k: int) -> list[Ranked]:
    """The K best passing candidates, highest quality first (ties: earliest candidate)."""
    return sorted(passed, key=lambda r: (-r.quality, r.candidate_id))[:k]
