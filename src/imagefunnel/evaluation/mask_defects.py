"""Broken alpha mattes, to measure the cutout scorers against (tests and benchmarks only).

Written apart from both the market's garbage masks (``market/cutout_app``) and the scorers
(``scoring/cutout``), so that no detector is graded by its own twin. Every defect takes a good
8-bit matte and a seeded generator and returns a matte a person would reject: the subject eaten into,
a halo of background kept, the matte slid off the subject, holes punched into it, confetti around
it, edges smeared or blocky, or nothing / everything kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["MASK_DEFECTS", "MaskDefect", "Matte"]

Matte = NDArray[np.uint8]
MaskDefect = Callable[[Matte, np.random.Generator], Matte]


def _side(matte: Matte) -> int:
    return int(max(matte.shape[:2]))


def _disk(radius: int) -> NDArray[np.uint8]:
    size = 2 * radius + 1
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), dtype=np.uint8)


def eroded(matte: Matte, rng: np.random.Generator) -> Matte:
    """The subject's outline eaten 4-7 % of the frame inwards (hair, shoulders, ears gone)."""
    radius = max(2, round(_side(matte) * rng.uniform(0.04, 0.07)))
    return np.asarray(cv2.erode(matte, _disk(radius)), dtype=np.uint8)


def halo(matte: Matte, rng: np.random.Generator) -> Matte:
    """A band of background 3-6 % of the frame wide kept around the subject."""
    radius = max(2, round(_side(matte) * rng.uniform(0.03, 0.06)))
    return np.asarray(cv2.dilate(matte, _disk(radius)), dtype=np.uint8)


def shifted(matte: Matte, rng: np.random.Generator) -> Matte:
    """The matte slid 6-12 % of the frame sideways and down (an off-by-a-crop alignment bug)."""
    h, w = matte.shape[:2]
    dx = round(w * rng.uniform(0.06, 0.12)) * int(rng.choice([-1, 1]))
    dy = round(h * rng.uniform(0.03, 0.06))
    shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return np.asarray(cv2.warpAffine(matte, shift, (w, h), borderValue=(0,)), dtype=np.uint8)


def holed(matte: Matte, rng: np.random.Generator) -> Matte:
    """3-6 transparent holes punched inside the subject."""
    out = matte.copy()
    inside = np.argwhere(cv2.erode(matte, _disk(max(3, _side(matte) // 25))) > 200)
    if len(inside) == 0:
        return out
    for _ in range(int(rng.integers(3, 7))):
        y, x = inside[int(rng.integers(0, len(inside)))]
        radius = max(3, round(_side(matte) * rng.uniform(0.02, 0.04)))
        cv2.circle(out, (int(x), int(y)), radius, (0,), thickness=-1)
    return out


def confetti(matte: Matte, rng: np.random.Generator) -> Matte:
    """Dozens of opaque specks of background scattered around the subject."""
    out = matte.copy()
    outside = np.argwhere(cv2.dilate(matte, _disk(max(3, _side(matte) // 30))) < 10)
    if len(outside) == 0:
        return out
    for _ in range(int(rng.integers(30, 60))):
        y, x = outside[int(rng.integers(0, len(outside)))]
        radius = max(2, round(_side(matte) * rng.uniform(0.005, 0.015)))
        cv2.circle(out, (int(x), int(y)), radius, (255,), thickness=-1)
    return out


def smeared(matte: Matte, rng: np.random.Generator) -> Matte:
    """Edges smeared into a wide grey ramp (a low-resolution matte upsampled with a blur)."""
    sigma = _side(matte) * rng.uniform(0.02, 0.04)
    return np.asarray(cv2.GaussianBlur(matte, (0, 0), sigma), dtype=np.uint8)


def blocky(matte: Matte, rng: np.random.Generator) -> Matte:
    """A matte computed at 1/16-1/24 of the size and blown up with nearest-neighbour steps."""
    h, w = matte.shape[:2]
    factor = int(rng.integers(16, 25))
    small = cv2.resize(matte, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), dtype=np.uint8)


def inverted(matte: Matte, rng: np.random.Generator) -> Matte:
    """Background kept, subject removed."""
    return np.asarray(255 - matte, dtype=np.uint8)


def empty(matte: Matte, rng: np.random.Generator) -> Matte:
    """Nothing kept (a fully transparent image)."""
    return np.zeros_like(matte)


def full(matte: Matte, rng: np.random.Generator) -> Matte:
    """Everything kept (the photo returned as it was, opaque)."""
    return np.full_like(matte, 255)


MASK_DEFECTS: Mapping[str, MaskDefect] = {
    "eroded": eroded,
    "halo": halo,
    "shifted": shifted,
    "holed": holed,
    "confetti": confetti,
    "smeared": smeared,
    "blocky": blocky,
    "inverted": inverted,
    "empty": empty,
    "full": full,
}
