"""Intermediates that several scorers share, each computed at most once per image.

Scorers stay pure functions of (image, context); this object only caches what they derive from the
image, so that gray levels, the analysis-size copy and histograms are computed once per candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.imaging import DecodedImage

if TYPE_CHECKING:  # faces imports this module; at run time the models object builds the analysis
    from imagefunnel.scoring.faces import FaceAnalysis, FaceModels

_T = TypeVar("_T")

__all__ = ["ANALYSIS_SIDE", "NATIVE_CROP", "ImageFeatures", "luma_percentile"]

# Global measures (exposure, sharpness, colour) are taken at a fixed long side so that thresholds
# do not depend on resolution. Images are never upscaled: that would invent a blur of its own.
ANALYSIS_SIDE = 512
# Pixel-level artefacts (sensor noise, 8x8 JPEG blocks) vanish when downscaling, so they are measured
# at native resolution on a central crop; the crop keeps the cost flat for large images.
NATIVE_CROP = 512
THUMBNAIL_SIDE = 64


def _fit(rgb: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages whole source pixels: no aliasing, no ringing that would read as detail.
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _luma(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


class ImageFeatures:
    """Lazily computed views of one :class:`DecodedImage` that tier-1 scorers share.

    With ``face_models`` it also gives the headshot tier its :attr:`faces` analysis.
    """

    def __init__(self, image: DecodedImage, *, face_models: FaceModels | None = None) -> None:
        self.image = image
        self._face_models = face_models
        self._faces: FaceAnalysis | None = None
        self._memo: dict[str, object] = {}

    def derived(self, key: str, compute: Callable[[ImageFeatures], _T]) -> _T:
        """``compute(self)``, computed once per image and remembered under ``key``: what several
        dimensions read (the directional detail, the illuminant estimate) is derived once."""
        if key not in self._memo:
            self._memo[key] = compute(self)
        return cast(_T, self._memo[key])

    @property
    def faces(self) -> FaceAnalysis:
        """The face analysis of :attr:`analysis_rgb`, created on first use, run lazily."""
        if self._faces is None:
            if self._face_models is None:
                raise ValueError("ImageFeatures was built without face_models; the face tier needs them")
            self._faces = self._face_models.analyse(self.analysis_rgb)
        return self._faces

    @cached_property
    def analysis_rgb(self) -> NDArray[np.uint8]:
        """The image with its long side reduced to at most ``ANALYSIS_SIDE`` pixels."""
        return _fit(self.image.rgb, ANALYSIS_SIDE)

    @cached_property
    def analysis_bgr(self) -> NDArray[np.uint8]:
        """:attr:`analysis_rgb` in OpenCV's channel order, as the OCR and NSFW models take it.

        One copy for both; ``cvtColor`` writes it in a fraction of the time that NumPy's
        ``ascontiguousarray(rgb[:, :, ::-1])`` takes (same bytes).
        """
        return np.asarray(cv2.cvtColor(self.analysis_rgb, cv2.COLOR_RGB2BGR), dtype=np.uint8)

    @cached_property
    def luma(self) -> NDArray[np.uint8]:
        """8-bit luma at analysis size."""
        return _luma(self.analysis_rgb)

    @cached_property
    def gray(self) -> NDArray[np.float32]:
        """Luma at analysis size as float32, for filters."""
        return self.luma.astype(np.float32)

    @cached_property
    def luma_cdf(self) -> NDArray[np.float64]:
        """Cumulative fraction of analysis-size pixels at or below each luma level 0..255."""
        hist = np.bincount(self.luma.ravel(), minlength=256).astype(np.float64)
        cdf: NDArray[np.float64] = np.cumsum(hist) / hist.sum()
        return cdf

    @cached_property
    def thumbnail_luma(self) -> NDArray[np.uint8]:
        """Luma of a tiny copy: area averaging removes noise and texture, leaving layout."""
        return _luma(_fit(self.analysis_rgb, THUMBNAIL_SIDE))

    @cached_property
    def native_gray(self) -> NDArray[np.float32]:
        """Float32 luma of a central crop at native resolution (at most ``NATIVE_CROP`` square).

        The crop origin is a multiple of 8 so that an encoder's 8x8 block grid stays where it was.
        """
        h, w = self.image.height, self.image.width
        top = max(0, (h - NATIVE_CROP) // 2) // 8 * 8
        left = max(0, (w - NATIVE_CROP) // 2) // 8 * 8
        crop = self.image.rgb[top : top + NATIVE_CROP, left : left + NATIVE_CROP]
        return _luma(crop).astype(np.float32)


def luma_percentile(cdf: NDArray[np.float64], fraction: float) -> float:
    """The lowest luma level at or below which ``fraction`` of the pixels lie."""
    return float(np.searchsorted(cdf, fraction, side="left"))
