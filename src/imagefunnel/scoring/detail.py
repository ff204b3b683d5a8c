"""Tier 1: fine detail. Is the picture sharp at its size, which way is it blurred, is it a mosaic?

**Sharpness** is read at one relative scale: every image is resampled to a long side of
:data:`SHARPNESS_SIDE` (a small image is enlarged, a large one reduced), so that the same blur
*relative to the picture* gives the same value whatever the pixel count; a 190 px photo is judged
as it looks when shown as large as a 1024 px one. The measure compares the energy of luma steps
one pixel apart with steps two pixels apart, in four directions. Natural detail is rough at the
pixel scale (the two energies are close); blur makes it smooth (the two-pixel steps carry four
times the energy). ``(4·E1/E2 − 1)/3`` runs from 0 (perfectly smooth) to 1 (white noise), and is
independent of the image's contrast. The smallest of the four directions is the value, so that a
motion blur, which leaves detail along its own direction intact, cannot hide behind it;
:func:`blur_kind` tells motion (one direction much smoother) from defocus or gaussian blur.

**Pixelation** looks for the grid of a mosaic at native resolution: inside a mosaic's cells the
luma does not change, so its steps stand on isolated columns and rows (the cell edges). The value
is the share of step counts that stand out above both neighbouring columns, the weaker of the two
axes, on the central half of the frame (where the subject is; a checked or striped wall behind
it is a pattern on one region, not a grid over the whole picture).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = ["PIXELATION_CROP", "SHARPNESS_SIDE", "blur_kind", "directional_detail", "pixelation", "sharpness"]

SHARPNESS_SIDE = 256
PIXELATION_CROP = 384  # at most this square from the centre, native pixels
_STEP = 4.0  # luma levels: a step smaller than this is encoder ringing, not an edge
_STANDS_OUT = 1.5  # a column "stands out" with more steps than 1.5x either neighbour
# A blur is "motion" when one direction is this much smoother than the sharpest one.
MOTION_ANISOTROPY = 2.5
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _resampled_luma(rgb: NDArray[np.uint8], side: int) -> NDArray[np.float32]:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Area averaging when reducing (no aliasing); bicubic when enlarging (the softness a viewer sees).
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(gray, size, interpolation=interpolation), dtype=np.float32)


def _step_energy(gray: NDArray[np.float32], dy: int, dx: int, lag: int) -> float:
    h, w = gray.shape
    y, x = lag * dy, lag * dx
    a = gray[y:, max(0, x) : w + min(0, x)]
    b = gray[: h - y, max(0, -x) : w - max(0, x)]
    return float(np.mean((a - b) ** 2)) if a.size else 0.0


def directional_detail(gray: NDArray[np.float32]) -> tuple[float, ...]:
    """``(4·E1/E2 − 1)/3`` along the rows, columns and both diagonals (0 smooth .. 1 noise)."""
    out = []
    for dy, dx in _DIRECTIONS:
        one, two = _step_energy(gray, dy, dx, 1), _step_energy(gray, dy, dx, 2)
        out.append(0.0 if two < 1e-3 else max(0.0, (4.0 * one / two - 1.0) / 3.0))
    return tuple(out)


def _detail(features: ImageFeatures) -> tuple[float, ...]:
    return features.derived(
        "detail.directions", lambda f: directional_detail(_resampled_luma(f.image.rgb, SHARPNESS_SIDE))
    )


def blur_kind(features: ImageFeatures) -> str:
    """``"motion"`` when one direction is much smoother than the others, else ``"defocus/gaussian"``
    (both smooth every direction alike). Meaningful for an image that failed ``sharpness``."""
    detail = _detail(features)
    return "motion" if max(detail) > MOTION_ANISOTROPY * max(min(detail), 1e-6) else "defocus/gaussian"


@default_registry.register(
    DimensionInfo(
        name="sharpness",
        tier=1,
        direction=Direction.HIGHER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="fine-detail ratio (0 smooth .. 1 noise)",
        # Clean real photos (dev set, seed 0: 14 photos of 8 people, 14 clean variants each,
        # soft-focus and JPEG q45 copies included) measured ≥ 0.053, 99.5 % ≥ 0.056. The cut sits
        # 15 % under the clean minimum, so a soft clean photo passes; face_sharpness judges the
        # face at its own scale as well.
        default_threshold=0.045,
        cost=2.0,
        fail_label="blurry",
        description=f"Fine detail at a {SHARPNESS_SIDE} px long side (any image resampled to it): the "
        "energy of 1-px luma steps against 2-px steps, in the smoothest of four directions, so a "
        "motion blur cannot hide behind its sharp direction. Independent of contrast and size.",
    )
)
def sharpness(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    return min(_detail(features))


# A mosaic's cells repeat across the frame, so its edges stand on many columns; a few straight
# edges (a box's sides, a door frame) stand on a handful. Below this many standing columns the
# share is scaled down in proportion: 3-14 px cells over the ≥ 128 px crop give at least 9.
_MOSAIC_COLUMNS = 8


def _standing_out(profile: NDArray[np.float32]) -> float:
    neighbours = np.maximum(np.r_[profile[1:], 0.0], np.r_[0.0, profile[:-1]])
    excess = np.maximum(profile - _STANDS_OUT * neighbours, 0.0)
    share = float(excess.sum() / max(float(profile.sum()), 1.0))
    columns = int(np.count_nonzero(excess > 0.01 * max(float(excess.sum()), 1.0)))
    return share * min(1.0, columns / _MOSAIC_COLUMNS)


@default_registry.register(
    DimensionInfo(
        name="pixelation",
        tier=1,
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="share of edges on a grid",
        # Clean real photos (dev set, seed 0, 196 clean images incl. checked and striped walls and
        # JPEG q45 copies) measured ≤ 0.07; mosaics of 3-14 px cells, on and off the 8-px grid,
        # mean-filled or point-sampled, 0.60 and up. 0.30 leaves 4x the clean maximum.
        default_threshold=0.30,
        cost=2.5,
        fail_label="pixelated (mosaic)",
        description="Share of luma steps (≥ 4 levels) that stand on isolated columns and rows, as "
        "the edges of a mosaic's cells do; the weaker axis, on the central half of the frame at "
        "native resolution. About 0 for photos, whatever their pattern; 0.6-1 for a mosaic.",
        decimals=2,
    )
)
def pixelation(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    rgb = features.image.rgb
    h, w = rgb.shape[:2]
    ch, cw = min(max(h // 2, 16), PIXELATION_CROP, h), min(max(w // 2, 16), PIXELATION_CROP, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[top : top + ch, left : left + cw]), cv2.COLOR_RGB2GRAY)
    values = []
    for arr in (gray.astype(np.int16), gray.astype(np.int16).T):
        steps = (np.abs(np.diff(arr, axis=1)) > _STEP).sum(axis=0).astype(np.float32)
        if steps.sum() < arr.shape[0]:
            return 0.0  # too flat to hold a mosaic's edges: no evidence either way
        values.append(_standing_out(steps))
    return min(values) if math.isfinite(min(values)) else 0.0
