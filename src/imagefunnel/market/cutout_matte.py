"""The market's own background-removal model and its garbage mattes.

The emulated APIs segment with mediapipe's *landscape* selfie model (a different network from the
one the self-hosted provider runs) and refine it by quality tier; garbage mattes are drawn here,
apart from the evaluation defects and the scorers, so that no scorer is graded by its twin.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.imaging import fit_long_side
from imagefunnel.market.cutout_profile import GarbageMatte

__all__ = ["MarketMatter"]

Rgb = NDArray[np.uint8]
Matte = NDArray[np.uint8]
_PREVIEW_SIDE = 400  # a budget API's "preview" size


class MarketMatter:
    """Mattes for the market's cutout APIs; one model per thread (mediapipe graphs are not shared)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _model(self) -> Any:
        model = getattr(self._local, "model", None)
        if model is None:
            from mediapipe.python.solutions import selfie_segmentation

            from imagefunnel.scoring.faces import quiet_native_stderr

            with quiet_native_stderr():  # TFLite and absl log to fd 2 while the graph first runs
                model = selfie_segmentation.SelfieSegmentation(model_selection=1)
                model.process(np.zeros((64, 64, 3), dtype=np.uint8))
            self._local.model = model
        return model

    def cut(self, rgb: Rgb, *, quality: str) -> tuple[Rgb, Matte]:
        """The photo (resized for a budget API) and its matte."""
        if quality == "budget":
            rgb = fit_long_side(rgb, _PREVIEW_SIDE)
        soft = np.asarray(self._model().process(np.ascontiguousarray(rgb)).segmentation_mask, np.float32)
        if quality == "premium":
            soft = np.asarray(cv2.ximgproc.guidedFilter(rgb, soft, 6, 2e-3), dtype=np.float32)
            soft = np.clip((soft - 0.35) / 0.3, 0.0, 1.0)
        else:
            soft = np.clip((soft - 0.4) / 0.2, 0.0, 1.0)  # the network's own edges, hardened
        return rgb, np.asarray(np.clip(soft * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def garbage(matte: Matte, kind: GarbageMatte, rng: np.random.Generator) -> Matte:
    """A broken version of ``matte`` of the given kind."""
    h, w = matte.shape
    if kind is GarbageMatte.EMPTY:
        return np.zeros_like(matte)
    if kind is GarbageMatte.FULL:
        return np.full_like(matte, 255)
    if kind is GarbageMatte.INVERTED:
        return np.asarray(255 - matte, dtype=np.uint8)
    if kind is GarbageMatte.BLOCKY:
        step = int(rng.integers(20, 32))
        small = matte[::step, ::step]
        return np.asarray(np.repeat(np.repeat(small, step, axis=0), step, axis=1)[:h, :w], dtype=np.uint8)
    if kind is GarbageMatte.OFFSET:
        dx = int(w * rng.uniform(0.08, 0.15))
        out = np.zeros_like(matte)
        out[:, dx:] = matte[:, : w - dx]
        return out
    size = max(3, int(max(h, w) * rng.uniform(0.04, 0.07))) | 1  # HALO: background kept around
    return np.asarray(cv2.dilate(matte, np.ones((size, size), np.uint8)), dtype=np.uint8)
