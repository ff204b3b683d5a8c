"""Tier 2, ``ad_creative``: room for the copy, and the brand's colours where colour is used.

* ``safe_area_busyness``: the brief's safe areas (where headline and logo will be laid over) must be
  calm, or the copy will not read: the share of strong-gradient pixels in the busiest area.
* ``off_palette``: of the image's *saturated* pixels (chroma ≥ 20: where colour carries meaning;
  greys, skin and shadows do not), the share farther than the brief's ``palette_delta_e`` (CIEDE2000)
  from every brand colour.
* ``palette_presence``: the share of all pixels within tolerance of a brand colour; a creative
  without any brand colour is off-brand however clean it is.

Stray text is judged by the tier-3 text dimensions, which apply to every use case; a brief with
``allow_text: true`` waives them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.colorimetry import delta_e_2000, hex_to_lab, rgb_to_lab
from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, Need, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = ["AD_CREATIVE", "off_palette", "palette_presence", "safe_area_busyness"]

AD_CREATIVE = "ad_creative"
_USE = frozenset({AD_CREATIVE})
_register = default_registry.register
_STRONG_GRADIENT = 40.0  # Sobel magnitude (luma levels) of an edge that competes with text
_SATURATED = 20.0  # CIELAB chroma
_SAMPLE_SIDE = 128  # colour statistics are taken on a small copy: area averaging keeps the mix


def _palette_distance(
    features: ImageFeatures, context: ScoringContext | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    brief = context.brief if context is not None else None
    if brief is None or not brief.palette:
        return None
    rgb = features.analysis_rgb
    scale = _SAMPLE_SIDE / max(rgb.shape[:2])
    if scale < 1:
        rgb = np.asarray(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8)
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    palette = np.stack([hex_to_lab(color) for color in brief.palette])
    nearest = delta_e_2000(lab[:, None, :], palette[None, :, :]).min(axis=1)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    return nearest, chroma


@_register(
    DimensionInfo(
        name="safe_area_busyness",
        tier=2,
        use_cases=_USE,
        needs=frozenset({Need.SAFE_AREAS}),
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="fraction of the area",
        default_threshold=0.06,
        cost=1.0,
        fail_label="no calm room for the copy",
        description="Share of strong-gradient pixels (Sobel ≥ 40 levels at 512 px) in the busiest "
        "of the brief's safe areas: a sky, a wall or a soft bokeh stays low; faces, foliage or "
        "products placed there do not.",
    )
)
def safe_area_busyness(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    brief = context.brief if context is not None else None
    if brief is None or not brief.safe_areas:
        return 1.0
    gray = features.gray
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    strong = cv2.magnitude(gx, gy) >= _STRONG_GRADIENT
    h, w = strong.shape
    worst = 0.0
    for area in brief.safe_areas:
        top, left = int(area.y * h), int(area.x * w)
        bottom, right = (
            max(top + 1, int((area.y + area.height) * h)),
            max(left + 1, int((area.x + area.width) * w)),
        )
        worst = max(worst, float(strong[top:bottom, left:right].mean()))
    return worst


@_register(
    DimensionInfo(
        name="off_palette",
        tier=2,
        use_cases=_USE,
        needs=frozenset({Need.PALETTE}),
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="fraction of saturated pixels",
        default_threshold=0.35,
        cost=2.0,
        fail_label="colours off the brand palette",
        description="Of the saturated pixels (CIELAB chroma ≥ 20), the share farther than the "
        "brief's palette_delta_e (CIEDE2000) from every brand colour. 0 when nothing is saturated.",
        decimals=2,
    )
)
def off_palette(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    found = _palette_distance(features, context)
    if found is None or context is None or context.brief is None:
        return math.inf
    nearest, chroma = found
    saturated = chroma >= _SATURATED
    if not saturated.any():
        return 0.0
    return float((nearest[saturated] > context.brief.palette_delta_e).mean())


@_register(
    DimensionInfo(
        name="palette_presence",
        tier=2,
        use_cases=_USE,
        needs=frozenset({Need.PALETTE}),
        direction=Direction.HIGHER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="fraction of the frame",
        default_threshold=0.03,
        cost=2.0,
        fail_label="no brand colour",
        description="Share of the frame within the brief's palette_delta_e (CIEDE2000) of a brand colour.",
        decimals=3,
    )
)
def palette_presence(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    found = _palette_distance(features, context)
    if found is None or context is None or context.brief is None:
        return 0.0
    nearest, _ = found
    return float((nearest <= context.brief.palette_delta_e).mean())
