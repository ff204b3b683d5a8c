"""Clean variations of a real photo: what a good image may look like after ordinary handling.

None of these is a defect, and none may be rejected. Besides the handling a delivery pipeline does
(crop, exposure, resize, JPEG re-encode), they imitate ordinary snapshots rather than press
portraits: slightly soft focus, light from one side, an already heavily compressed copy. Every
variation draws its parameters from the given generator, so a seed reproduces the set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["CLEAN_VARIANTS", "Rgb", "Variant", "decode_jpeg", "encode_jpeg"]

Rgb = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Variant:
    """A clean image and, when its encoding is part of the variation, the encoded bytes to keep."""

    rgb: Rgb
    params: str  # the drawn parameters, for the labels: "gain=1.14"
    jpeg: bytes | None = None


def encode_jpeg(rgb: Rgb, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> Rgb:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _resize(rgb: Rgb, factor: float) -> Rgb:
    h, w = rgb.shape[:2]
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def as_is(rgb: Rgb, rng: np.random.Generator) -> Variant:
    return Variant(rgb, "")


def crop(rgb: Rgb, rng: np.random.Generator) -> Variant:
    h, w = rgb.shape[:2]
    side = float(rng.uniform(0.72, 0.9))
    ch, cw = round(h * side), round(w * side)
    # Off-centre by at most a quarter of the margin: a headshot crop keeps the face in.
    top = round((h - ch) / 2 * (1 + rng.uniform(-0.25, 0.25)))
    left = round((w - cw) / 2 * (1 + rng.uniform(-0.25, 0.25)))
    return Variant(np.ascontiguousarray(rgb[top : top + ch, left : left + cw]), f"side={side:.2f}")


def exposure(rgb: Rgb, rng: np.random.Generator) -> Variant:
    gain = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.2) + 1.0)
    out = np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return Variant(out, f"gain={gain:.2f}")


def resize(rgb: Rgb, rng: np.random.Generator) -> Variant:
    factor = float(rng.uniform(0.55, 0.8))
    return Variant(_resize(rgb, factor), f"scale={factor:.2f}")


def jpeg(rgb: Rgb, rng: np.random.Generator) -> Variant:
    quality = int(rng.integers(70, 86))
    data = encode_jpeg(rgb, quality)
    return Variant(decode_jpeg(data), f"q={quality}", data)


def soft(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A snapshot slightly out of focus: sigma 0.5-0.9 px at 512 px, a quarter of the mildest blur defect.
    sigma = float(rng.uniform(0.5, 0.9)) * max(rgb.shape[:2]) / 512
    out = np.asarray(cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma), dtype=np.uint8)
    return Variant(out, f"sigma={sigma:.2f}")


def side_lit(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # Light from one side: the far side loses 0.7-1.3 stops, smoothly, in linear light.
    stops = float(rng.uniform(0.7, 1.3))
    ramp = np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32)
    ramp = ramp * ramp * (3 - 2 * ramp)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    gain = (2.0 ** (-stops * ramp))[None, :, None]
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * gain
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return Variant(np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8), f"stops={stops:.2f}")


def compressed(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A copy that went through a messenger or a social network: smaller and JPEG quality 45-60.
    factor = float(rng.uniform(0.6, 0.8))
    quality = int(rng.integers(45, 61))
    data = encode_jpeg(_resize(rgb, factor), quality)
    return Variant(decode_jpeg(data), f"scale={factor:.2f} q={quality}", data)


CLEAN_VARIANTS: dict[str, Callable[[Rgb, np.random.Generator], Variant]] = {
    "as_is": as_is,
    "crop": crop,
    "exposure": exposure,
    "resize": resize,
    "jpeg": jpeg,
    "soft": soft,
    "side_lit": side_lit,
    "compressed": compressed,
}
