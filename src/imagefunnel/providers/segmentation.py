"""Self-hosted background removal: mediapipe's bundled selfie segmenter, edges refined on the photo.

The model ships inside the ``mediapipe==0.10.21`` wheel (``selfie_segmentation.tflite``, 250 KB,
Apache-2.0), so nothing is downloaded. Its 256x256 mask is soft and coarse at the edges; a guided
filter (He et al., in ``opencv-contrib``'s ``ximgproc``) with the full-resolution photo as guide
snaps the alpha to the photo's own edges, which is most of what separates a usable cutout from a
blurry one. No other bundled segmenter was found on PyPI (rembg, carvekit, backgroundremover and
similar packages all download their weights at run time).

``local_cutout_provider`` wraps it as a :class:`~imagefunnel.providers.local.LocalWorkerProvider`:
priced by measured compute time x a configurable $/hour, with the model load measured as its cold
start.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from imagefunnel.errors import ImageError
from imagefunnel.imaging import decode_image, fit_long_side
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.local import LocalWorkerError, LocalWorkerProvider

__all__ = ["BACKGROUND_REMOVAL_MODEL", "SelfieCutter", "encode_rgba", "local_cutout_provider"]

# The model id every background-removal provider serves, so the router can choose between them.
BACKGROUND_REMOVAL_MODEL = "background-removal"
_MAX_SIDE = 2048  # larger photos are cut out at this size, as most removal APIs do


def encode_rgba(rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> bytes:
    """An RGBA PNG of ``rgb`` with ``alpha`` as its transparency."""
    out = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out, "PNG", compress_level=3)
    return out.getvalue()


class SelfieCutter:
    """Cut the subject out of a photo. ``load`` is the cold start; ``cut`` is thread-safe."""

    def __init__(self, *, model_selection: int = 0, radius: int = 8, eps: float = 1e-3) -> None:
        self._model_selection = model_selection  # 0: general 256x256, 1: landscape 144x256
        self._radius = radius
        self._eps = eps
        self._segmenter: Any = None
        self._lock = threading.Lock()  # one mediapipe graph, used by one thread at a time

    @property
    def loaded(self) -> bool:
        return self._segmenter is not None

    def load(self) -> None:
        """Import mediapipe, build the graph and run it once (what a cold start costs)."""
        with self._lock:
            if self._segmenter is not None:
                return
            try:
                from mediapipe.python.solutions import selfie_segmentation
            except ImportError as exc:
                raise LocalWorkerError(
                    f"mediapipe is not installed ({exc}); install imagefunnel[faces]"
                ) from exc
            from imagefunnel.scoring.faces import quiet_native_stderr

            with quiet_native_stderr():  # TFLite and absl log to fd 2 while the graph is built
                segmenter = selfie_segmentation.SelfieSegmentation(model_selection=self._model_selection)
                segmenter.process(np.zeros((64, 64, 3), dtype=np.uint8))  # the first run builds the graph
            self._segmenter = segmenter

    def unload(self) -> None:
        with self._lock:
            segmenter, self._segmenter = self._segmenter, None
        if segmenter is not None:
            segmenter.close()

    def alpha(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The subject's alpha matte (0-255) at the photo's resolution."""
        self.load()
        with self._lock:
            mask = self._segmenter.process(np.ascontiguousarray(rgb)).segmentation_mask
        soft = np.asarray(mask, dtype=np.float32)
        refined = cv2.ximgproc.guidedFilter(rgb, soft, self._radius, self._eps)
        # The segmenter is unsure over a wide band; keep the filter's edge placement but decide
        # the matte (a smoothstep over 0.3-0.7) so only a thin band along the outline stays soft.
        t = np.clip((refined - 0.3) / 0.4, 0.0, 1.0)
        decided = t * t * (3.0 - 2.0 * t)
        return np.asarray(np.clip(decided * 255.0 + 0.5, 0, 255), dtype=np.uint8)

    def cut(self, data: bytes) -> bytes:
        """An RGBA PNG cutout of the photo in ``data``; ``LocalWorkerError`` if it is unusable."""
        try:
            rgb = decode_image(data).rgb
        except ImageError as exc:
            raise LocalWorkerError(f"input image: {exc}") from exc
        rgb = fit_long_side(rgb, _MAX_SIDE)
        return encode_rgba(rgb, self.alpha(rgb))


def local_cutout_provider(
    *,
    name: str = "local-cutout",
    usd_per_hour: float = 0.40,
    workers: int = 1,
    cutter: SelfieCutter | None = None,
    boot_s: float = 0.0,
    idle_unload_s: float | None = None,
    serve_cold: bool = True,
    max_queue: int | None = None,
    timeout_s: float = 30.0,
) -> LocalWorkerProvider:
    """The self-hosted background remover as a provider of :data:`BACKGROUND_REMOVAL_MODEL`."""
    model = cutter or SelfieCutter()

    def work(request: GenerationRequest) -> bytes:
        if not request.reference_images:
            raise LocalWorkerError("background removal needs an input image (the job's source)")
        return model.cut(request.reference_images[0])

    return LocalWorkerProvider(
        name=name,
        models=frozenset({BACKGROUND_REMOVAL_MODEL}),
        work=work,
        workers=workers,
        usd_per_hour=usd_per_hour,
        expected_seconds=0.05,
        timeout_s=timeout_s,
        supports_reference_images=True,
        load=model.load,
        unload=model.unload,
        expected_load_s=1.0,
        boot_s=boot_s,
        idle_unload_s=idle_unload_s,
        serve_cold=serve_cold,
        max_queue=max_queue,
    )
