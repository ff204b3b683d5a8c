"""Ranking passed candidates, spotting near-duplicates, and keeping the delivered set diverse.

A customer who asks for 60 headshots wants 60 different pictures, not 12 near-copies five times.
Perceptual-hash distance (of 64 bits) measures how different two pictures look: re-encodes are 0-4
(rejected as duplicates), one pose reframed is about 8-14, different poses or lighting 20 and up.
:func:`best_k` picks greedily: the best candidate first, then each time the candidate whose quality
plus a bonus for looking unlike everything already chosen is highest, so a slightly less perfect
but different picture beats a third copy of the same one. :func:`set_diversity` says how diverse a
delivered set is.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
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


# Distance at which two pictures count as fully different for the diversity bonus: beyond a
# reframing of one pose (8-14 bits) a new pose or light gains nothing more.
DIVERSE_DISTANCE = 20
# Quality (a mean normalised margin, ~0..3) traded for looking fully different from the chosen set.
DIVERSITY_WEIGHT = 0.5


def _distance(a: str, b: str) -> int:
    return int(imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b))


def best_k(passed: Sequence[Ranked], k: int, *, hashes: Mapping[int, str] | None = None) -> list[Ranked]:
    """The K best passing candidates. Without ``hashes``: by quality (ties: earliest candidate).
    With them (candidate id -> perceptual hash): greedily diverse, quality plus a bonus of up to
    ``DIVERSITY_WEIGHT`` for being ``DIVERSE_DISTANCE`` bits or more from every candidate chosen."""
    ordered = sorted(passed, key=lambda r: (-r.quality, r.candidate_id))
    if not hashes or k <= 1:
        return ordered[:k]
    chosen: list[Ranked] = []
    nearest: dict[int, int] = {r.candidate_id: DIVERSE_DISTANCE for r in ordered}
    left = list(ordered)
    while left and len(chosen) < k:

        def gain(r: Ranked) -> tuple[float, float, int]:
            bonus = DIVERSITY_WEIGHT * min(nearest[r.candidate_id], DIVERSE_DISTANCE) / DIVERSE_DISTANCE
            return (r.quality + bonus, r.quality, -r.candidate_id)

        pick = max(left, key=gain)
        chosen.append(pick)
        left.remove(pick)
        mine = hashes.get(pick.candidate_id)
        for r in left:
            other = hashes.get(r.candidate_id)
            if mine is not None and other is not None:
                nearest[r.candidate_id] = min(nearest[r.candidate_id], _distance(mine, other))
    return chosen


@dataclass(frozen=True, slots=True)
class SetDiversity:
    """How different the pictures of a set look from each other, in perceptual-hash bits."""

    images: int
    min_distance: int  # the closest pair: the set's worst near-copy
    median_distance: float  # typical pair
    median_nearest: float  # typical distance from a picture to its closest other one

    def __str__(self) -> str:
        if self.images < 2:
            return f"{self.images} image: no pairs"
        return (
            f"{self.images} images: closest pair {self.min_distance} bits, median pair "
            f"{self.median_distance:g}, median nearest neighbour {self.median_nearest:g} (of 64)"
        )


def set_diversity(hashes: Sequence[str]) -> SetDiversity:
    """Pairwise perceptual-hash distances of a delivered set, summarised."""
    n = len(hashes)
    if n < 2:
        return SetDiversity(n, 0, 0.0, 0.0)
    dist = [[_distance(a, b) for b in hashes] for a in hashes]
    pairs = [dist[i][j] for i in range(n) for j in range(i + 1, n)]
    nearest = [min(dist[i][j] for j in range(n) if j != i) for i in range(n)]
    return SetDiversity(n, min(pairs), float(statistics.median(pairs)), float(statistics.median(nearest)))
