"""Tier 3: no nudity, by NudeNet's bundled detector (``nudenet==3.4.2``, ``320n.onnx``).

The detector is a YOLOv8n that finds 18 classes of body parts, covered and exposed, and faces. Only
the explicitly sexual ``*_EXPOSED`` classes count (:data:`EXPOSED`): an exposed foot, armpit, belly or
male chest is not nudity in a headshot, and ``*_COVERED`` and ``FACE_*`` never are. The dimension's
value is the highest score among those detections, taken before overlapping boxes are merged (so a
surer face box cannot hide one); above 0.5 fails.

Licence: nudenet's metadata says MIT, but the 3.4.2 wheel's LICENSE files carry the AGPL-3.0 text and
the model is trained with Ultralytics YOLOv8 (AGPL-3.0). So the model is optional: it is not a
dependency of the package, and when it is absent the dimension is skipped with a message saying so.
Only the ``.onnx`` file is used (located inside the installed package, or given as a path); no
nudenet code is imported.

Not verified on positive images: none can be had offline and none may be fabricated. The decision
logic (class filter, score cut) is tested on the detector's structured output; the model on clean
portraits only.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, ScorerRegistry, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = [
    "EXPOSED",
    "LABELS",
    "NSFW_COST",
    "Detection",
    "NsfwDetector",
    "decode_output",
    "exposed_score",
    "register_nsfw",
]

NSFW_COST = 400.0  # declared expensive so it runs after tiers 1 and 2: it costs ~35 ms, rarely fails
INPUT_SIDE = 320
MIN_DETECTION = 0.2  # below this a detector row is noise (nudenet's own cuts, kept for parity)
MIN_KEPT = 0.25
NMS_IOU = 0.45

# The model's output classes, in its order (nudenet 3.4.2).
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPOSED = frozenset(
    {
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
    }
)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector box: class label, score in [0, 1], and (x, y, w, h) in image pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]


def exposed_score(detections: Iterable[Detection], *, classes: frozenset[str] = EXPOSED) -> float:
    """The highest score among detections of ``classes``; 0 when there is none."""
    return max((d.score for d in detections if d.label in classes), default=0.0)


def _letterbox(bgr: NDArray[np.uint8]) -> tuple[NDArray[np.float32], float]:
    """Pad right/bottom to a square, resize to the input side: NCHW float in [0, 1], and the scale.

    The channels go in as BGR: nudenet's own pipeline swaps twice (``COLOR_RGBA2BGR`` on a BGR
    image, then ``swapRB``), so that is what the model's published scores are for.
    """
    h, w = bgr.shape[:2]
    side = max(h, w)
    square = cv2.copyMakeBorder(bgr, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    small = cv2.resize(square, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_LINEAR)
    blob = small.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(blob), side / INPUT_SIDE


def decode_output(output: NDArray[np.float32], *, scale: float, nms: bool = True) -> list[Detection]:
    """Turn the model's raw (1, 4 + classes, anchors) output into detections.

    With ``nms`` (nudenet's behaviour) overlapping boxes are merged across classes, so an exposed
    part overlapping a surer box of another class disappears. The decision uses ``nms=False``: every
    anchor's best class counts, so nothing is hidden behind a face or a covered part.
    """
    rows = np.asarray(output, dtype=np.float32)[0].T
    class_scores = rows[:, 4:]
    best = class_scores.argmax(axis=1)
    score = class_scores[np.arange(len(rows)), best]
    keep = np.flatnonzero(score >= MIN_DETECTION)
    cx, cy, bw, bh = (rows[keep, i] * scale for i in range(4))
    boxes = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1)
    if nms:
        chosen = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), score[keep].tolist(), MIN_KEPT, NMS_IOU))
    else:
        chosen = np.arange(len(keep))
    detections = []
    for i in chosen.astype(np.int64).ravel():
        x, y, w, h = (float(v) for v in boxes[i])
        detections.append(Detection(LABELS[int(best[keep[i]])], float(score[keep[i]]), (x, y, w, h)))
    return detections


class NsfwDetector:
    """The NudeNet detector, loaded on first use. One ONNX session, safe to share between threads."""

    def __init__(self, *, model_path: Path | None = None) -> None:
        self._model_path = model_path
        self._lock = threading.Lock()
        self._session: Any = None

    def model_file(self) -> Path | None:
        """The model file to load: the given path, or ``320n.onnx`` inside the installed nudenet."""
        if self._model_path is not None:
            return self._model_path
        spec = importlib.util.find_spec("nudenet")
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / "320n.onnx"

    def unavailable(self) -> str | None:
        """Why the detector cannot run here, or None when it can."""
        path = self.model_file()
        if path is None:
            return (
                "NSFW model not installed: `pip install --no-deps nudenet==3.4.2` (AGPL-3.0 model) "
                "or give its 320n.onnx path"
            )
        if not path.is_file():
            return f"NSFW model file not found: {path}"
        return None

    def detect(self, rgb: NDArray[np.uint8], *, nms: bool = True) -> list[Detection]:
        """Detections in an RGB image (see :func:`decode_output` for ``nms``)."""
        return self.detect_bgr(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), dtype=np.uint8), nms=nms)

    def detect_bgr(self, bgr: NDArray[np.uint8], *, nms: bool = True) -> list[Detection]:
        """Detections in a BGR image: the scorer hands over the BGR analysis copy OCR uses too."""
        blob, scale = _letterbox(bgr)
        session = self._load()
        output = session.run(None, {session.get_inputs()[0].name: blob})[0]
        return decode_output(output, scale=scale, nms=nms)

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime  # heavy: import on first use only

                path = self.model_file()
                if path is None or not path.is_file():
                    raise FileNotFoundError(self.unavailable())
                options = onnxruntime.SessionOptions()
                # One thread per call: the executor already scores several images in parallel.
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._session = onnxruntime.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            return self._session


def register_nsfw(registry: ScorerRegistry, detector: NsfwDetector) -> None:
    """Register the ``nsfw`` dimension, measured by ``detector``, into ``registry``."""

    def nsfw(features: ImageFeatures, context: ScoringContext | None = None) -> float:
        # The detector works at 320 px: the 512 px analysis copy loses nothing and decodes nothing.
        return exposed_score(detector.detect_bgr(features.analysis_bgr, nms=False))

    info = DimensionInfo(
        name="nsfw",
        tier=3,
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="detector score",
        default_threshold=0.5,
        cost=NSFW_COST,
        fail_label="nudity",
        description="Highest NudeNet (320n) score among exposed breasts, genitalia, buttocks and anus; "
        "other classes (faces, covered parts, feet, armpits, belly) never count. Skipped when the "
        "optional model is not installed.",
        decimals=2,
    )
    registry.add(info, nsfw, probe=detector.unavailable)


register_nsfw(default_registry, NsfwDetector())
