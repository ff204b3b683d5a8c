"""What every defect generator shares: the generator record, linear light, and a face locator.

The generators grade the scorer, so they must not see how it measures. They locate faces and eyes
with OpenCV's Haar cascades (``cv2.data``), never with the face mesh and detector the scorer uses,
and they do their own colour arithmetic here rather than importing the scorer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Box",
    "Generator",
    "Rgb",
    "from_linear",
    "haar_eyes",
    "haar_face",
    "mouth_of",
    "to_linear",
]

Rgb = NDArray[np.uint8]
Floats = NDArray[np.float32]
MakeFn = Callable[[Rgb, float, np.random.Generator], Rgb]


@dataclass(frozen=True, slots=True, kw_only=True)
class Generator:
    """One way of making one family of defect. ``strength`` runs over (0, 1]; 0.5 and up is hard.

    ``expect`` names the dimensions meant to reject it. ``make`` raises ``ValueError`` when the
    photo cannot carry the defect (no face found for a face edit).
    """

    name: str
    family: str
    expect: tuple[str, ...]
    make: MakeFn
    how: str  # one line: how it is made, for the labels and the report


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def to_linear(rgb: Rgb) -> Floats:
    """sRGB levels to linear light in 0..1 (the IEC 61966-2-1 curve)."""
    c = rgb.astype(np.float32) / 255.0
    out: Floats = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    return out


def from_linear(linear: NDArray[Any]) -> Rgb:
    """Linear light back to sRGB levels; what exceeds 1 clips, as a sensor or an encoder would."""
    x = np.clip(linear, 0.0, 1.0)
    c = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(c * 255.0 + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _cascade(name: str) -> Any:
    return cv2.CascadeClassifier(str(cv2.data.haarcascades) + name)  # type: ignore[attr-defined]


def _faces(gray: NDArray[np.uint8]) -> list[Box]:
    side = min(gray.shape)
    found = list(
        _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(24, side // 5), max(24, side // 5))
        )
    )
    found += list(
        _cascade("haarcascade_frontalface_alt2.xml").detectMultiScale(
            gray, scaleFactor=1.05, minNeighbors=3, minSize=(max(24, side // 5), max(24, side // 5))
        )
    )
    return [Box(int(x), int(y), int(w), int(h)) for x, y, w, h in found]


def _has_an_eye(gray: NDArray[np.uint8], face: Box) -> bool:
    top = gray[face.y : face.y + face.h * 11 // 20, face.x : face.x + face.w]
    minimum = max(8, face.w // 9)
    for cascade in ("haarcascade_eye_tree_eyeglasses.xml", "haarcascade_eye.xml"):
        if len(
            _cascade(cascade).detectMultiScale(
                top, scaleFactor=1.05, minNeighbors=3, minSize=(minimum, minimum)
            )
        ):
            return True
    return False


def haar_face(rgb: Rgb) -> Box:
    """The largest frontal face the Haar cascades find that has an eye where an eye should be (a
    face-like patch of wallpaper has none); ValueError when there is none."""
    gray = np.asarray(cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), dtype=np.uint8)
    for face in sorted(_faces(gray), key=lambda b: b.w * b.h, reverse=True):
        if _has_an_eye(gray, face):
            return face
    raise ValueError("this defect needs a photo with a detectable face")


def mouth_of(face: Box) -> tuple[float, float, float]:
    """Mouth centre and half-width by a face box's proportions (the Haar box ends at the chin)."""
    return face.cx, face.y + 0.8 * face.h, 0.2 * face.w


def haar_eyes(rgb: Rgb, face: Box) -> tuple[Box, Box]:
    """The two eyes inside ``face`` (upper half), left of image first; ValueError if not both."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    top = gray[face.y : face.y + face.h * 11 // 20, face.x : face.x + face.w]
    minimum = max(8, face.w // 9)
    eyes: list[Box] = []
    for cascade in ("haarcascade_eye_tree_eyeglasses.xml", "haarcascade_eye.xml"):
        found = _cascade(cascade).detectMultiScale(
            top, scaleFactor=1.05, minNeighbors=4, minSize=(minimum, minimum)
        )
        eyes = [Box(int(x) + face.x, int(y) + face.y, int(w), int(h)) for x, y, w, h in found]
        left = [e for e in eyes if e.cx < face.cx]
        right = [e for e in eyes if e.cx >= face.cx]
        if left and right:
            pick = (max(left, key=lambda e: e.w), max(right, key=lambda e: e.w))
            return pick
    raise ValueError("this defect needs a face whose two eyes are found")
