"""Labeled defects injected into emulated outputs (and into scorer test images).

Every function takes an RGB ``uint8`` array and a strength in ``(0, 1]`` and returns a new array;
``truncate`` works on encoded bytes because the defect *is* the encoding. The labels never reach the
scorers: the market keeps them in a side channel for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.market import face_defects

Image = NDArray[np.uint8]


class Defect(StrEnum):
    BLUR = "blur"
    NOISE = "noise"
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    JPEG_BLOCKING = "jpeg_blocking"
    COLOR_CAST = "color_cast"
    TEXT_OVERLAY = "text_overlay"
    FACE_CROPPED_OUT = "face_cropped_out"
    BLANK = "blank"
    BLACK = "black"
    TRUNCATED = "truncated"
    # Headshot defects (imagefunnel.market.face_defects), placed with the face models' landmarks.
    EXTRA_FACE = "extra_face"
    FACE_CUT = "face_cut"
    SMALL_FACE = "small_face"
    HARSH_SHADOW = "harsh_shadow"
    SKIN_TONE_SHIFT = "skin_tone_shift"
    CLUTTERED_BACKGROUND = "cluttered_background"
    CLOSED_EYES = "closed_eyes"
    LOPSIDED_MOUTH = "lopsided_mouth"
    # Product-shot defects (imagefunnel.market.products), drawn into the scene as it is rendered.
    PRODUCT_OFF_CENTRE = "product_off_centre"
    PRODUCT_CUT_OFF = "product_cut_off"
    PRODUCT_WRONG_COLOUR = "product_wrong_colour"
    PRODUCT_STRAY_TEXT = "product_stray_text"
    PRODUCT_BUSY_BACKDROP = "product_busy_backdrop"


def blur(img: Image, strength: float = 1.0) -> Image:
    # Sigma relative to image size so the defect means the same at 256 px and 1024 px.
    sigma = max(img.shape[:2]) * (0.004 + 0.012 * strength)
    return np.asarray(cv2.GaussianBlur(img, (0, 0), sigmaX=sigma), dtype=np.uint8)


def noise(img: Image, strength: float = 1.0, *, seed: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    sd = 8.0 + 32.0 * strength
    noisy = img.astype(np.float32) + rng.normal(0.0, sd, img.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _gain(img: Image, factor: float) -> Image:
    return np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def overexpose(img: Image, strength: float = 1.0) -> Image:
    return _gain(img, 1.8 + 1.7 * strength)


def underexpose(img: Image, strength: float = 1.0) -> Image:
    return _gain(img, 0.35 - 0.27 * strength)


def jpeg_blocking(img: Image, strength: float = 1.0) -> Image:
    quality = round(12 - 10 * strength)  # 12 .. 2
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError("JPEG encoding failed")
    return np.asarray(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), dtype=np.uint8)


def color_cast(img: Image, strength: float = 1.0) -> Image:
    shift = np.array([40.0 + 50.0 * strength, 0.0, -(30.0 + 40.0 * strength)], dtype=np.float32)
    return np.clip(img.astype(np.float32) + shift, 0, 255).astype(np.uint8)


def text_overlay(img: Image, strength: float = 1.0, *, text: str = "ACME SALE 50% OFF") -> Image:
    out = img.copy()
    h, w = out.shape[:2]
    scale = w / 600 * (0.8 + 0.8 * strength)
    thickness = max(1, round(scale * 2))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = max(0, (w - tw) // 2), int(h * 0.85)
    cv2.rectangle(out, (x - 6, y - th - 8), (x + tw + 6, y + 8), (255, 255, 255), -1)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 0, 0), thickness, cv2.LINE_AA)
    return out


def face_cropped_out(img: Image, strength: float = 1.0) -> Image:
    # Portraits are centred on the face: keep only the lower-left corner (shoulder, background).
    h, w = img.shape[:2]
    frac = 0.45 - 0.15 * strength
    corner = img[int(h * (1 - frac)) :, : int(w * frac)]
    return np.asarray(cv2.resize(corner, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def blank(img: Image, strength: float = 1.0) -> Image:
    mean = img.reshape(-1, 3).mean(axis=0)
    return np.broadcast_to(mean.astype(np.uint8), img.shape).copy()


def black(img: Image, strength: float = 1.0) -> Image:
    return np.zeros_like(img)


def truncate(data: bytes, strength: float = 1.0) -> bytes:
    """Cut encoded bytes, keeping between 60% and 20% of them."""
    keep = max(16, int(len(data) * (0.6 - 0.4 * strength)))
    return data[:keep]


PIXEL_DEFECTS: dict[Defect, Callable[[Image, float], Image]] = {
    Defect.BLUR: blur,
    Defect.NOISE: noise,
    Defect.OVEREXPOSED: overexpose,
    Defect.UNDEREXPOSED: underexpose,
    Defect.JPEG_BLOCKING: jpeg_blocking,
    Defect.COLOR_CAST: color_cast,
    Defect.TEXT_OVERLAY: text_overlay,
    Defect.FACE_CROPPED_OUT: face_cropped_out,
    Defect.BLANK: blank,
    Defect.BLACK: black,
}


# Kept apart from PIXEL_DEFECTS, which the tier-1 tests read as "what tier 1 must reject". Closed
# eyes and a lopsided mouth change few pixels, but only around the eyes and the mouth: the headshot
# tier, not tier 1, is what catches them.
FACE_DEFECTS: dict[Defect, Callable[[Image, float], Image]] = {
    Defect.EXTRA_FACE: face_defects.extra_face,
    Defect.FACE_CUT: face_defects.face_cut,
    Defect.SMALL_FACE: face_defects.small_face,
    Defect.HARSH_SHADOW: face_defects.harsh_shadow,
    Defect.SKIN_TONE_SHIFT: face_defects.skin_tone_shift,
    Defect.CLUTTERED_BACKGROUND: face_defects.cluttered_background,
    Defect.CLOSED_EYES: face_defects.closed_eyes,
    Defect.LOPSIDED_MOUTH: face_defects.lopsided_mouth,
}


def apply_pixel_defect(img: Image, defect: Defect, strength: float = 1.0) -> Image:
    """Apply one pixel-level defect; ``Defect.TRUNCATED`` is applied to bytes with ``truncate``."""
    if defect is Defect.TRUNCATED:
        raise ValueError("truncation applies to encoded bytes: use truncate()")
    if defect in FACE_DEFECTS:
        return FACE_DEFECTS[defect](img, strength)
    return PIXEL_DEFECTS[defect](img, strength)
