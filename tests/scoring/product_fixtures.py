"""Product shots for the product and ad-creative tests: rendered studio shots and real photos.

The renders are shaded objects (a box, a bottle) on a seamless backdrop with mild sensor noise and a
JPEG round trip; real portraits serve as cluttered backdrops and as "not a product shot".
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.evaluation.variants import decode_jpeg, encode_jpeg

Rgb = NDArray[np.uint8]


def studio_shot(
    *,
    color: tuple[int, int, int] = (200, 30, 40),
    background: tuple[int, int, int] = (255, 255, 255),
    shape: str = "box",
    center: tuple[float, float] = (0.5, 0.5),
    scale: float = 0.4,
    size: tuple[int, int] = (640, 512),
    seed: int = 0,
) -> Rgb:
    """A shaded product on a seamless backdrop (``center``/``scale`` in fractions of the frame)."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = background
    # A soft studio falloff towards the bottom of the backdrop.
    img *= np.linspace(1.0, 0.97, h, dtype=np.float32)[:, None, None]
    mask = np.zeros((h, w), np.uint8)
    cx, cy = int(center[0] * w), int(center[1] * h)
    half = int(scale * min(w, h) / 2)
    if shape == "box":
        cv2.rectangle(mask, (cx - half, cy - half), (cx + half, cy + half), (255,), -1)
    else:  # a bottle: body and neck
        cv2.ellipse(mask, (cx, cy + half // 3), (half // 2, int(half * 0.75)), 0, 0, 360, (255,), -1)
        cv2.rectangle(mask, (cx - half // 6, cy - half), (cx + half // 6, cy), (255,), -1)
    shade = np.linspace(1.1, 0.75, w, dtype=np.float32)[None, :, None]  # lit from the left
    product = np.clip(np.array(color, np.float32) * shade, 0, 255)
    inside = mask > 0
    img[inside] = np.broadcast_to(product, img.shape)[inside]
    img += rng.normal(0.0, 1.5, img.shape).astype(np.float32)
    rgb = np.asarray(np.clip(img, 0, 255), dtype=np.uint8)
    return decode_jpeg(encode_jpeg(rgb, 92))


def on_backdrop(product: Rgb, backdrop: Rgb, *, background: tuple[int, int, int] = (255, 255, 255)) -> Rgb:
    """``product`` (a studio shot on ``background``) pasted over a real photo."""
    h, w = product.shape[:2]
    scene = np.asarray(cv2.resize(backdrop, (w, h), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    diff = np.abs(product.astype(np.int16) - np.array(background, np.int16)).sum(axis=-1)
    keep = diff > 60
    out = scene.copy()
    out[keep] = product[keep]
    return out
