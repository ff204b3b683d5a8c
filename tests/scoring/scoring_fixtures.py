"""Real portrait photos and their mild variants, for the scoring tests (imported by them)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

import imagefunnel.market
from imagefunnel.imaging import DecodedImage, decode_image

PORTRAITS = Path(imagefunnel.market.__file__).parent / "assets" / "portraits"
# Human portraits: crisp press photos, a small 190 px crop, a 300 px photo and an old scan.
HUMANS = (
    "astronaut",
    "biden",
    "grace_hopper",
    "jesper_2",
    "jesper_3",
    "luispedro",
    "obama_1",
    "obama_2",
    "obama_3",
)

Rgb = NDArray[np.uint8]


def load_rgb(name: str) -> Rgb:
    return decode_image((PORTRAITS / f"{name}.jpg").read_bytes()).rgb


def as_image(rgb: Rgb) -> DecodedImage:
    return DecodedImage.from_array(rgb)


def reencode_jpeg(rgb: Rgb, quality: int) -> Rgb:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return decode_image(buf.getvalue()).rgb


def mild_variants(rgb: Rgb) -> dict[str, Rgb]:
    """What a clean image may look like after ordinary handling: none of these is a defect."""
    h, w = rgb.shape[:2]
    return {
        "as is": rgb,
        "brighter 15%": np.clip(rgb * 1.15, 0, 255).astype(np.uint8),
        "darker 15%": (rgb * 0.85).astype(np.uint8),
        "crop 80%": rgb[h // 10 : h - h // 10, w // 10 : w - w // 10],
        "crop 50%": rgb[h // 4 : h - h // 4, w // 4 : w - w // 4],
        "jpeg q80": reencode_jpeg(rgb, 80),
        "half size": np.asarray(cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA), np.uint8),
    }
