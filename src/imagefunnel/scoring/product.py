"""Tier 2, ``product``: one product, whole and centred, on a clean (or the required) background,
in its own colours.

A product shot is read as *background* and *object*: the background colour is the median of a thin
band along the frame's border, and the object is every pixel that differs from it by more than a
visible colour difference, cleaned of specks. That reading needs no model and holds exactly where a
product shot is supposed to be (a clean backdrop); on a cluttered backdrop it finds an "object" that
fills the frame, which is what fails ``product_cutoff`` and ``backdrop_clutter``. The product's
colour is compared with the job's ``source`` (a reference photo of the product; its alpha, when it
has one, says which pixels are the product).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.imaging import DecodedImage, fit_long_side
from imagefunnel.scoring.colorimetry import delta_e_2000, hex_to_lab, rgb_to_lab
from imagefunnel.scoring.features import ANALYSIS_SIDE, ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, Need, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = [
    "PRODUCT",
    "Layout",
    "backdrop_clutter",
    "background_color_delta_e",
    "layout_of",
    "product_area",
    "product_centering",
    "product_color_delta_e",
    "product_cutoff",
]

PRODUCT = "product"
_USE = frozenset({PRODUCT})
_HIGHER = Direction.HIGHER_IS_BETTER
_LOWER = Direction.LOWER_IS_BETTER
_register = default_registry.register
_BAND = 0.03  # border band that is taken as background, fraction of the short side
_OBJECT_DELTA = 12.0  # Lab distance from the background that makes a pixel "object"


@dataclass(frozen=True, slots=True)
class Layout:
    """Background and object of a product shot at analysis size."""

    lab: NDArray[np.float64]
    background_lab: NDArray[np.float64]
    band: NDArray[np.bool_]
    object_mask: NDArray[np.bool_]


def _band(shape: tuple[int, int]) -> NDArray[np.bool_]:
    h, w = shape
    width = max(2, round(min(h, w) * _BAND))
    band = np.zeros((h, w), dtype=np.bool_)
    band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    return band


def layout_of(rgb: NDArray[np.uint8], *, alpha: NDArray[np.uint8] | None = None) -> Layout:
    """Read ``rgb`` as object on background (``alpha``, when given, is the object)."""
    lab = rgb_to_lab(rgb)
    band = _band((rgb.shape[0], rgb.shape[1]))
    background = np.median(lab[band], axis=0)
    if alpha is not None:
        mask = alpha >= 128
    else:
        distance = np.linalg.norm(lab - background, axis=-1)
        raw = (distance > _OBJECT_DELTA).astype(np.uint8)
        # Close the object's own gaps (a label, a highlight), then drop specks of noise.
        kernel = np.ones((5, 5), np.uint8)
        mask = cv2.morphologyEx(cv2.morphologyEx(raw, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel) > 0
    return Layout(lab=lab, background_lab=np.asarray(background), band=band, object_mask=np.asarray(mask))


_layouts: weakref.WeakKeyDictionary[ImageFeatures, Layout] = weakref.WeakKeyDictionary()
_references: weakref.WeakKeyDictionary[DecodedImage, Layout] = weakref.WeakKeyDictionary()


def _layout(features: ImageFeatures) -> Layout:
    found = _layouts.get(features)
    if found is None:
        found = _layouts[features] = layout_of(features.analysis_rgb)
    return found


def _reference_layout(source: DecodedImage) -> Layout:
    found = _references.get(source)
    if found is None:
        alpha = None if source.alpha is None else fit_long_side(source.alpha, ANALYSIS_SIDE)
        found = _references[source] = layout_of(fit_long_side(source.rgb, ANALYSIS_SIDE), alpha=alpha)
    return found


@_register(
    DimensionInfo(
        name="product_area",
        tier=2,
        use_cases=_USE,
        direction=_HIGHER,
        value_range=(0.0, 1.0),
        unit="fraction of the frame",
        default_threshold=0.02,
        cost=1.0,
        fail_label="no product in the frame",
        description="Share of the frame that differs visibly (Lab distance > 12) from the border's "
        "background colour: a blank frame or a speck of a product is not a product shot.",
        decimals=2,
    )
)
def product_area(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    return float(_layout(features).object_mask.mean())


@_register(
    DimensionInfo(
        name="product_cutoff",
        tier=2,
        use_cases=frozenset({PRODUCT, "ad_creative"}),
        direction=_LOWER,
        value_range=(0.0, 1.0),
        unit="fraction of the border",
        default_threshold=0.02,
        cost=1.0,
        fail_label="product cut off by the frame",
        description="Share of the frame's outermost pixels that belong to the object: a product "
        "that runs off the frame (or a backdrop that is not clean) touches the border.",
        decimals=3,
    )
)
def product_cutoff(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    mask = _layout(features).object_mask
    edge = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(edge.mean())


@_register(
    DimensionInfo(
        name="product_centering",
        tier=2,
        use_cases=_USE,
        direction=_LOWER,
        value_range=(0.0, 1.0),
        unit="fraction of the half-diagonal",
        default_threshold=0.15,
        cost=1.0,
        fail_label="product off centre",
        description="Distance from the centre of the object's bounding box to the frame's centre, "
        "as a fraction of half the frame's diagonal (1.0 when there is no object).",
        decimals=3,
    )
)
def product_centering(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    mask = _layout(features).object_mask
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 1.0
    h, w = mask.shape
    cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
    offset = math.hypot(cx - (w - 1) / 2.0, cy - (h - 1) / 2.0)
    return min(1.0, offset / (math.hypot(w, h) / 2.0))


@_register(
    DimensionInfo(
        name="backdrop_clutter",
        tier=2,
        use_cases=_USE,
        direction=_LOWER,
        value_range=(0.0, math.inf),
        unit="ΔE00 (90th percentile)",
        default_threshold=6.0,
        cost=1.5,
        fail_label="cluttered background",
        description="How far the border band's pixels stray from their median colour (90th "
        "percentile of CIEDE2000): near 0 for a seamless backdrop, a soft studio gradient stays "
        "low, a room, a table edge or a pattern do not.",
        decimals=1,
    )
)
def backdrop_clutter(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    layout = _layout(features)
    band = layout.lab[layout.band]
    return float(np.percentile(delta_e_2000(band, layout.background_lab), 90))


@_register(
    DimensionInfo(
        name="background_color_delta_e",
        tier=2,
        use_cases=frozenset({PRODUCT, "ad_creative"}),
        needs=frozenset({Need.BACKGROUND}),
        direction=_LOWER,
        value_range=(0.0, math.inf),
        unit="ΔE00",
        default_threshold=5.0,
        cost=1.0,
        fail_label="wrong background colour",
        description="CIEDE2000 between the background (median of the border band) and the brief's "
        "required background colour.",
        decimals=1,
    )
)
def background_color_delta_e(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    brief = context.brief if context is not None else None
    if brief is None or brief.background is None:
        return math.inf
    return float(delta_e_2000(_layout(features).background_lab, hex_to_lab(brief.background)))


@_register(
    DimensionInfo(
        name="product_color_delta_e",
        tier=2,
        use_cases=_USE,
        needs=frozenset({Need.SOURCE}),
        direction=_LOWER,
        value_range=(0.0, math.inf),
        unit="ΔE00",
        default_threshold=10.0,
        cost=2.0,
        fail_label="product colour differs from the reference",
        description="CIEDE2000 between the product's median colour in the image and in the "
        "reference photo (the job's source; its alpha marks the product when it has one). Medians "
        "ignore highlights and shadows, which lighting may change.",
        decimals=1,
    )
)
def product_color_delta_e(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    source = context.source if context is not None else None
    if source is None:
        return math.inf
    here = _layout(features)
    there = _reference_layout(source)
    if not here.object_mask.any() or not there.object_mask.any():
        return math.inf
    mine = np.median(here.lab[here.object_mask], axis=0)
    theirs = np.median(there.lab[there.object_mask], axis=0)
    return float(delta_e_2000(mine, theirs))
