"""Skin statistics of a face and the colour science to compare two of them.

Luminance is compared in photographic stops (log2 of linear-light luminance), the unit in which a
photographer judges exposure; colour in CIEDE2000 ΔE, where ~2 is a just-noticeable difference and
10+ reads as a different complexion. Both use medians over the skin pixels of the face mesh (the face
oval minus eyes, brows and lips), so that glasses, stubble and specular highlights move them little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring.color import srgb_to_linear
from imagefunnel.scoring.faces import FACE_OVAL, FaceAnalysis

__all__ = [
    "SkinStats",
    "ciede2000",
    "face_halves",
    "face_shadow_edge",
    "linear_luminance",
    "reference_chroma_shift",
    "reference_differences",
    "skin_stats",
    "stops",
]

_MIN_SKIN_PIXELS = 50


@dataclass(frozen=True, slots=True)
class SkinStats:
    """Median linear luminance (0..1) and median CIELAB colour of a face's skin; its chroma in
    linear light as (log2 R/G, log2 B/G) of the median channels; the share of it that is clipped."""

    luminance: float
    lab: tuple[float, float, float]
    chroma: tuple[float, float] = (0.0, 0.0)
    clipped: float = 0.0


def linear_luminance(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Relative luminance Y (0..1) of sRGB pixels: undo the sRGB curve, weight by Rec. 709."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    # A lookup per 8-bit level rather than a power per pixel.
    table = np.where(levels <= 0.04045, levels / 12.92, ((levels + 0.055) / 1.055) ** 2.4)
    linear = table.astype(np.float32)[rgb]
    y: NDArray[np.float32] = linear @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return y


def _stats(analysis: FaceAnalysis) -> SkinStats | None:
    mask = analysis.skin_mask
    if mask is None or int(mask.sum()) < _MIN_SKIN_PIXELS:
        return None
    pixels = analysis.rgb[mask]
    # OpenCV's float RGB→Lab expects sRGB in 0..1 and returns L in 0..100, a*/b* in about ±127.
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    median_lab = np.median(lab, axis=0)
    r, g, b = (max(float(v), 1e-4) for v in np.median(srgb_to_linear(pixels), axis=0))
    return SkinStats(
        luminance=float(np.median(linear_luminance(pixels))),
        lab=(float(median_lab[0]), float(median_lab[1]), float(median_lab[2])),
        chroma=(math.log2(r / g), math.log2(b / g)),
        # A channel at 250+ has lost its value: that skin is burnt out, whatever the median says.
        clipped=float(np.count_nonzero(pixels.max(axis=1) >= 250)) / len(pixels),
    )


def skin_stats(analysis: FaceAnalysis) -> SkinStats | None:
    """The primary face's skin statistics (None without a mesh); computed once per analysis."""
    return analysis.derived("skin.stats", _stats)


def stops(luminance: float, reference: float) -> float:
    """How many stops ``luminance`` is above (positive) or below ``reference``."""
    return math.log2(max(luminance, 1e-6) / max(reference, 1e-6))


# Directions of the line that splits the skin in two: the face's own axis and across it, and the two
# diagonals (a shadow cast from above a shoulder crosses the face at a slant).
_SPLITS_DEG = (0.0, 45.0, 90.0, 135.0)


def _halves(analysis: FaceAnalysis) -> tuple[float, float] | None:
    marks, skin = analysis.landmarks, analysis.skin_mask
    if marks is None or skin is None:
        return None
    ys, xs = np.nonzero(skin)
    if ys.size < 40:
        return None
    luminance = linear_luminance(analysis.rgb[ys, xs])
    top, chin = marks[FACE_OVAL[0]], marks[FACE_OVAL[18]]
    axis = math.atan2(float(chin[1] - top[1]), float(chin[0] - top[0]))
    cx, cy = float(xs.mean()), float(ys.mean())
    best: tuple[float, float] | None = None
    for degrees in _SPLITS_DEG:
        angle = axis + math.radians(degrees)
        side = (xs - cx) * math.sin(angle) - (ys - cy) * math.cos(angle)
        one, other = luminance[side > 0], luminance[side < 0]
        if min(one.size, other.size) < 20:
            continue
        pair = (float(np.median(one)), float(np.median(other)))
        if best is None or abs(stops(*pair)) > abs(stops(*best)):
            best = pair
    return best


def face_halves(analysis: FaceAnalysis) -> tuple[float, float] | None:
    """Median linear luminance of the skin on either side of the line through its centre that
    separates them most (of four: along the face's axis, across it, both diagonals). None without a
    mesh or with too little skin on a side; computed once per analysis."""
    return analysis.derived("skin.halves", _halves)


# A shadow's edge is a step in the skin's light over a short distance, wherever and at whatever
# slant it crosses the face; side light is a ramp over the whole frame and a round face falls off
# at its sides. The edge is looked for on lines at every 15 degrees through the central 40 % of the
# skin, comparing two strips of skin each 15 % of the skin's extent wide on either side of a line:
# a hard or soft shadow edge puts nearly its whole step between them, a ramp only the share of it
# that the strips span.
_EDGE_ANGLES_DEG = tuple(range(0, 180, 15))
_EDGE_OFFSETS = (-0.2, -0.1, 0.0, 0.1, 0.2)  # line positions, share of the skin's extent
_EDGE_STRIP = 0.15  # width of each strip, share of the skin's extent
_MIN_STRIP_PIXELS = 20


def _edge_step(analysis: FaceAnalysis) -> float:
    marks, skin = analysis.landmarks, analysis.skin_mask
    if marks is None or skin is None:
        return math.nan
    # Every second pixel each way: a strip's median needs hundreds of pixels, not thousands, and
    # this is a quarter of the cost (12 directions x 5 lines).
    ys, xs = np.nonzero(skin[::2, ::2])
    ys, xs = ys * 2, xs * 2
    if ys.size < 40:
        return math.nan
    level = np.log2(np.maximum(linear_luminance(analysis.rgb[ys, xs]), 1e-6))
    top, chin = marks[FACE_OVAL[0]], marks[FACE_OVAL[18]]
    axis = math.atan2(float(chin[1] - top[1]), float(chin[0] - top[0]))
    cx, cy = float(xs.mean()), float(ys.mean())
    fx, fy = xs.astype(np.float32) - cx, ys.astype(np.float32) - cy
    angles = axis + np.radians(np.asarray(_EDGE_ANGLES_DEG, dtype=np.float32))
    sides = np.sin(angles)[:, None] * fx[None, :] - np.cos(angles)[:, None] * fy[None, :]
    low, high = np.percentile(sides, (2, 98), axis=1)
    best = math.nan
    for side, extent in zip(sides, np.maximum(high - low, 1.0), strict=True):
        width = _EDGE_STRIP * float(extent)
        for offset in _EDGE_OFFSETS:
            line = offset * float(extent)
            one = level[(side > line) & (side < line + width)]
            other = level[(side < line) & (side > line - width)]
            if min(one.size, other.size) < _MIN_STRIP_PIXELS:
                continue
            step = abs(float(np.median(one)) - float(np.median(other)))
            if not step <= best:  # also replaces the NaN start
                best = step
    return best


def face_shadow_edge(analysis: FaceAnalysis) -> float:
    """The largest step, in stops, between the median light of two adjacent strips of skin on
    either side of a line across the face (12 directions, lines through its central 40 %); NaN
    without a mesh. Computed once per analysis."""
    return analysis.derived("skin.shadow_edge", _edge_step)


def reference_differences(
    analysis: FaceAnalysis, references: Sequence[DecodedImage]
) -> list[tuple[float, float]]:
    """(stops, ΔE2000) from the candidate's skin to each reference photo's skin that has a face."""
    mine = skin_stats(analysis)
    if mine is None:
        return []
    out = []
    for image in references:
        theirs = skin_stats(analysis.models.reference(image))
        if theirs is not None:
            # Colour without lightness: a darker room changes L*, not the complexion's hue and
            # chroma (lightness is what skin_tone_stops judges, in stops).
            same_light = (mine.lab[0], theirs.lab[1], theirs.lab[2])
            out.append((stops(mine.luminance, theirs.luminance), ciede2000(mine.lab, same_light)))
    return out


def ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """CIEDE2000 colour difference (kL = kC = kH = 1), after Sharma, Wu and Dalal (2005)."""
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dl, dc = l2 - l1, c2p - c1p
    dh = 0.0
    if c1p * c2p:
        dh = h2p - h1p
        dh = dh - 360 if dh > 180 else dh + 360 if dh < -180 else dh
    big_dh = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_bar = h1p + h2p
    if c1p * c2p:
        h_bar = (h1p + h2p) / 2 if abs(h1p - h2p) <= 180 else (h1p + h2p + 360) / 2 % 360
    t = (
        1
        - 0.17 * math.cos(math.radians(h_bar - 30))
        + 0.24 * math.cos(math.radians(2 * h_bar))
        + 0.32 * math.cos(math.radians(3 * h_bar + 6))
        - 0.20 * math.cos(math.radians(4 * h_bar - 63))
    )
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / math.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = (
        -2
        * math.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
        * math.sin(math.radians(60 * math.exp(-(((h_bar - 275) / 25) ** 2))))
    )
    return math.sqrt(
        (dl / s_l) ** 2 + (dc / s_c) ** 2 + (big_dh / s_h) ** 2 + r_t * (dc / s_c) * (big_dh / s_h)
    )


def reference_chroma_shift(analysis: FaceAnalysis, references: Sequence[DecodedImage]) -> float:
    """How far the skin's chroma in linear light moved from the nearest reference photo's skin, in
    stops (the length of the change of (log2 R/G, log2 B/G)); NaN without a face on either side.

    A white-balance error multiplies the channels by gains, so it shifts these log ratios by the
    same amount on every surface, skin included; a change of light level leaves them alone."""
    mine = skin_stats(analysis)
    if mine is None:
        return math.nan
    shifts = []
    for image in references:
        theirs = skin_stats(analysis.models.reference(image))
        if theirs is not None:
            shifts.append(math.dist(mine.chroma, theirs.chroma))
    return min(shifts) if shifts else math.nan
