"""Framing a portrait for any output size: zoom, shift and rotate a window, keeping the face whole.

A window of the output's aspect ratio is cut out of the square source photo. For square outputs the
largest window that fits, zoomed in by the variation, always holds the face; for other shapes it
does not (a 768x512 window of a 512 px portrait is only 341 px tall, and the face is up to 360), so
the window is grown and moved until the face box, with a margin, lies inside it. A grown window may
reach past the photo: that band is filled with the photo's outermost pixels drawn outwards and thrown
out of focus, as a generator extends a backdrop — never with a mirror image of the subject (a
mirrored border puts half a face at the edge of a portrait that fills its photo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["FACE_BOXES", "FaceBox", "Variation", "vary"]

Image = NDArray[np.uint8]
FaceBox = tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the source

# The face detector's box (mediapipe short-range, as the headshot tier's ``face_margin`` sees it) on
# each portrait asset, measured once; ``tests/market/test_framing.py`` re-measures it.
FACE_BOXES: Mapping[str, FaceBox] = {
    "astronaut.jpg": (0.233, 0.256, 0.787, 0.810),
    "biden.jpg": (0.220, 0.336, 0.686, 0.802),
    "grace_hopper.jpg": (0.262, 0.306, 0.723, 0.767),
    "jesper_2.jpg": (0.258, 0.242, 0.817, 0.800),
    "jesper_3.jpg": (0.294, 0.371, 0.736, 0.813),
    "luispedro.jpg": (0.116, 0.230, 0.809, 0.922),
    "obama_1.jpg": (0.272, 0.235, 0.730, 0.693),
    "obama_2.jpg": (0.285, 0.284, 0.807, 0.806),
    "obama_3.jpg": (0.259, 0.364, 0.675, 0.780),
}
# The assets were cropped as a square of twice the face width around the face: the default box.
DEFAULT_FACE_BOX: FaceBox = (0.25, 0.25, 0.75, 0.75)
# Room kept between the face box and the frame, in face heights: the detector's box on a rotated,
# re-lit output moves by a few per cent, and ``face_margin`` fails at the first pixel cut. The top
# needs none: the box's top is mid-forehead, and the scorer allows a crop through the forehead.
_MARGIN_SIDE = 0.08
_MARGIN_BOTTOM = 0.08
_MARGIN_TOP = 0.0
_WARMTH = 0.07  # at most ±7 % more red and less blue (or the reverse)
# Resampling softens; a generator renders at the output size and does not. An unsharp mask gives back
# the detail a sub-pixel warp (base) and an upscale (per unit of magnification above 1) took away.
_SHARPEN_BASE = 0.3
_SHARPEN_PER_ZOOM = 1.5
_SHARPEN_SIGMA = 1.0
_BACKDROP_BLUR = 0.03  # sigma of the extended backdrop, as a fraction of the output's long side


@dataclass(frozen=True, slots=True)
class Variation:
    """Mild, realistic differences between two generations of the same subject."""

    crop: float  # side of the window relative to the largest that fits at this rotation (0.8..1)
    shift_x: float  # window offset as a fraction of the free half-margin (-0.55..0.55)
    shift_y: float  # (-0.4..0.4): keeps the face in
    flip: bool
    brightness: float  # multiplicative gain, 0.94..1.06
    contrast: float  # around the mean, 0.92..1.08
    warmth: float  # -1..1: warmer (more red, less blue) or cooler, at most ±7 %
    tint: tuple[float, float, float]  # RGB offset (±14 levels) applied towards the edges only
    rotation: float = 0.0  # degrees, counter-clockwise (-4..4)


def vary(src: Image, v: Variation, width: int, height: int, *, face: FaceBox = DEFAULT_FACE_BOX) -> Image:
    """``src`` framed for ``width`` x ``height`` around its ``face`` box, then re-lit and tinted."""
    img = _frame(src, v, width, height, face)
    if v.flip:
        img = img[:, ::-1]
    pixels = img.astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    pixels = (pixels - mean) * v.contrast + mean
    pixels *= v.brightness
    pixels *= np.array([1 + _WARMTH * v.warmth, 1.0, 1 - _WARMTH * v.warmth], dtype=np.float32)
    pixels += _edge_mask(height, width)[..., None] * np.array(v.tint, dtype=np.float32)
    out: Image = np.clip(pixels, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True, slots=True)
class _Window:
    width: float  # in source pixels
    height: float
    cx: float
    cy: float


def _window(side_w: int, side_h: int, v: Variation, aspect: float, face: FaceBox) -> _Window:
    """Where the output's window lies in the source: the variation's zoom and shift, then grown and
    moved (never shrunk) until the face box and its margin are inside."""
    theta = math.radians(v.rotation)
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    # The largest window whose rotated bounding box still fits the source, shrunk by the zoom.
    width = min(side_w / (cos + sin / aspect), side_h / (sin + cos / aspect)) * v.crop
    # The face box with its margins, rotated into the window's axes (the warp turns by +theta).
    left, top, right, bottom = face[0] * side_w, face[1] * side_h, face[2] * side_w, face[3] * side_h
    tall = bottom - top
    corners = np.array(
        [
            [left - _MARGIN_SIDE * tall, top - _MARGIN_TOP * tall],
            [right + _MARGIN_SIDE * tall, top - _MARGIN_TOP * tall],
            [left - _MARGIN_SIDE * tall, bottom + _MARGIN_BOTTOM * tall],
            [right + _MARGIN_SIDE * tall, bottom + _MARGIN_BOTTOM * tall],
        ]
    )
    a, b = math.cos(theta), math.sin(theta)
    rotate = np.array([[a, b], [-b, a]])
    turned = corners @ rotate.T
    (u0, w0), (u1, w1) = turned.min(axis=0), turned.max(axis=0)
    width = max(width, u1 - u0, (w1 - w0) * aspect)
    height = width / aspect
    box_w, box_h = width * cos + height * sin, width * sin + height * cos
    cx = side_w / 2 + (side_w - box_w) / 2 * v.shift_x
    cy = side_h / 2 + (side_h - box_h) / 2 * v.shift_y
    # Move the centre (in the window's axes) just enough to bring the face box inside.
    cu, cw = rotate @ np.array([cx, cy])
    moved_u = min(max(cu, u1 - width / 2), u0 + width / 2)
    moved_w = min(max(cw, w1 - height / 2), w0 + height / 2)
    if (moved_u, moved_w) != (cu, cw):  # untouched otherwise: no rounding from the round trip
        cx, cy = rotate.T @ np.array([moved_u, moved_w])
    return _Window(float(width), float(height), float(cx), float(cy))


def _frame(src: Image, v: Variation, width: int, height: int, face: FaceBox) -> Image:
    """Zoom, offset and rotate a window of the output's aspect out of ``src``, in one resampling."""
    side_h, side_w = src.shape[:2]
    win = _window(side_w, side_h, v, width / height, face)
    cx, cy, scale = win.cx, win.cy, width / win.width
    amount = _SHARPEN_BASE + _SHARPEN_PER_ZOOM * max(0.0, scale - 1.0)
    if scale < 1.0:
        # Shrinking: area-average first, so the affine warp below does not alias.
        src = np.asarray(
            cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
        cx, cy, scale = cx * scale, cy * scale, 1.0
    matrix = np.asarray(cv2.getRotationMatrix2D((cx, cy), v.rotation, scale), dtype=np.float64)
    matrix[:, 2] += (width / 2 - cx, height / 2 - cy)
    warped = cv2.warpAffine(
        src, matrix, (width, height), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT_101
    )
    pixels = _extend_backdrop(np.asarray(warped, dtype=np.float32), src, matrix)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), _SHARPEN_SIGMA)
    return np.clip(pixels + amount * detail, 0, 255).astype(np.uint8)


def _extend_backdrop(
    pixels: NDArray[np.float32], src: Image, matrix: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Replace what the warp took from beyond the photo's edge with its border, out of focus."""
    height, width = pixels.shape[:2]
    ones = np.ones(src.shape[:2], dtype=np.float32)
    warped = cv2.warpAffine(ones, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0.0,))
    inside = (np.asarray(warped) >= 0.5).astype(np.float32)
    if bool(inside.all()):
        return pixels  # the window lies within the photo: nothing was invented
    sigma = _BACKDROP_BLUR * max(height, width)
    edge = cv2.warpAffine(
        src, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    backdrop = cv2.GaussianBlur(np.asarray(edge, dtype=np.float32), (0, 0), sigma)
    # Feathered, so the sharp photo fades into its blurred extension instead of ending at a seam.
    alpha = (np.asarray(cv2.GaussianBlur(inside, (0, 0), sigma / 2)) * inside)[..., None]
    return np.asarray(pixels * alpha + backdrop * (1.0 - alpha), dtype=np.float32)


def _edge_mask(height: int, width: int) -> NDArray[np.float32]:
    # 0 over the central face region, rising smoothly to 1 in the corners: a background tint that
    # leaves skin tones alone (skin tone vs reference is a scored dimension).
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    radius = np.sqrt(xs**2 + ys**2) / np.sqrt(2.0)
    t = np.clip((radius - 0.55) / 0.45, 0.0, 1.0)
    mask: NDArray[np.float32] = t * t * (3 - 2 * t)
    return mask
