"""Tier 1: a colour cast, read as the white balance of the light in linear light (gray-edge).

A wrong white balance multiplies the three channels by different gains in linear light, so it is
measured there. The illuminant is estimated by the *gray-edge* hypothesis (van de Weijer, Gevers and
Gijsenij, 2007): the average colour of edges is achromatic, which holds better than gray-world
(the average colour of the scene) for close-ups of skin, warm rooms and coloured backdrops. The
estimate is split, in log chroma (log2 R/G, log2 B/G), into a *temperature* component (warm
to cool, the direction in which real light sources differ: candle, tungsten, daylight, shade) and a
*tint* component (green to magenta, across it, which real light rarely has). Clean real photos span
a box on those two axes: very warm rooms, slightly magenta flash, never green or blue-cold. The
value is how far, in stops, the estimate lies outside that box. A warm cast inside the range of real
rooms cannot be told from a warm room without a reference; the headshot tier's ``color_shift``
compares the face's skin with the subject's own reference photos, which is strict.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.generic import NOT_PORTRAIT
from imagefunnel.scoring.registry import DimensionInfo, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = [
    "COLOR_SIDE",
    "LIGHT_TEMPERATURE",
    "LIGHT_TINT",
    "color_cast",
    "gray_edge_illuminant",
    "srgb_to_linear",
]

# The box of real light, in stops of log chroma, from the clean real photos of the dev set (seed 0:
# 194 clean images, tungsten rooms, flash-lit bars, daylight, coloured walls): temperature
# (log2 R/G − log2 B/G)/√2 measured -0.21 .. +1.29 (warm), tint (log2 R/G + log2 B/G)/√2 measured
# -0.10 .. +0.70 (magenta). The edges below are those extremes rounded outwards.
LIGHT_TEMPERATURE = (-0.25, 1.3)
LIGHT_TINT = (-0.15, 0.75)

COLOR_SIDE = 128  # the illuminant is a global property: a small copy holds it, at a fraction of the cost
_LEVELS = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4).astype(np.float32)


def srgb_to_linear(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Linear light (0..1) of sRGB levels, by table."""
    out: NDArray[np.float32] = _LINEAR[rgb]
    return out


def gray_edge_illuminant(rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
    """The unit RGB colour of the light by gray-edge (2nd-order Minkowski mean of the gradient
    magnitude per channel, gaussian σ = 1 px, at a 128 px long side), clipped and black pixels out."""
    h, w = rgb.shape[:2]
    scale = COLOR_SIDE / max(h, w)
    if scale < 1.0:
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    linear = cv2.GaussianBlur(srgb_to_linear(rgb), (0, 0), 1.0)
    gx = cv2.Sobel(linear, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(linear, cv2.CV_32F, 0, 1, ksize=3)
    brightest = rgb.max(axis=2)
    usable = (brightest < 250) & (brightest > 10)
    if usable.sum() < 16:
        return np.full(3, 1 / math.sqrt(3))
    magnitude = np.sqrt(gx * gx + gy * gy)[usable].astype(np.float64)
    estimate = np.sqrt(np.mean(magnitude * magnitude, axis=0))
    norm = float(np.linalg.norm(estimate))
    return estimate / norm if norm > 0 else np.full(3, 1 / math.sqrt(3))


def _illuminant(features: ImageFeatures) -> NDArray[np.float64]:
    return features.derived("color.gray_edge", lambda f: gray_edge_illuminant(f.analysis_rgb))


def _outside(value: float, bounds: tuple[float, float]) -> float:
    return max(0.0, bounds[0] - value, value - bounds[1])


@default_registry.register(
    DimensionInfo(
        name="color_cast",
        tier=1,
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 20.0),
        unit="stops outside the range of real light",
        # Clean real photos lie inside the box by its construction (0.0); the cut gives 0.25 stops
        # of headroom beyond its edges, which are the clean extremes. A 1-stop blue or green
        # white-balance error lands 0.5-1.5 stops outside.
        default_threshold=0.25,
        cost=1.5,
        not_for=NOT_PORTRAIT,  # a product's own colours are its edges: judged against the brief instead
        fail_label="color cast",
        description="The light's colour by gray-edge in linear light (the average colour of edges "
        "is grey), as temperature (warm-cool) and tint (green-magenta) in log chroma; stops by "
        "which it lies outside the range clean real photos span. Green, blue-cold or strongly "
        "magenta light fails; warm rooms do not.",
        decimals=2,
    )
)
def color_cast(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    r, g, b = (max(float(v), 1e-6) for v in _illuminant(features))
    u, v = math.log2(r / g), math.log2(b / g)
    temperature, tint = (u - v) / math.sqrt(2), (u + v) / math.sqrt(2)
    return math.hypot(_outside(temperature, LIGHT_TEMPERATURE), _outside(tint, LIGHT_TINT))
