"""Shared face analysis for the headshot tier: face boxes, mesh landmarks and a person mask.

The models are mediapipe 0.10.21's legacy ``solutions`` (short-range face detection, the 478-point
face mesh with irises, selfie segmentation), whose TFLite weights ship inside the wheel, so nothing is
downloaded at run time. Their graphs are not thread-safe, so :class:`FaceModels` keeps one set per
thread; building a set takes a few milliseconds.

A :class:`FaceAnalysis` belongs to one image. Each model runs on it at most once, on first use, and
every dimension of the headshot tier reads the same results. Coordinates are pixels of the analysed
image (the tier-1 analysis copy, long side at most 512 px) and may lie outside the frame when the
face is cut by it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.errors import ImageFunnelError
from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring.features import ANALYSIS_SIDE

__all__ = [
    "FaceAnalysis",
    "FaceBox",
    "FaceModels",
    "FaceModelsUnavailable",
    "Landmarks",
    "fit_for_analysis",
    "quiet_native_stderr",
    "require_face_models",
]

_T = TypeVar("_T")
Landmarks = NDArray[np.float32]  # (478, 2): x, y in pixels

# A face the detector is this sure of is "the" face; the primary face of a portrait scores 0.9+.
DETECTION_CONFIDENCE = 0.5
# The mesh's own detector runs lower, on purpose: half faces and face fragments pasted into a
# picture ("three ears") reach 0.55–0.77 and must show up as extra meshes.
MESH_DETECTION_CONFIDENCE = 0.3
MAX_FACES = 4
_REFERENCE_CACHE = 32  # reference photos analysed per FaceModels (a job has a handful)

# Mesh indices (mediapipe face_mesh topology).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (336, 296, 334, 293, 300, 285, 295, 282, 283, 276)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10


class FaceModelsUnavailable(ImageFunnelError):
    """The headshot tier's models are not installed (``pip install 'imagefunnel[faces]'``)."""


def require_face_models(*, identity: bool = False) -> None:
    """Raise :class:`FaceModelsUnavailable` unless the face models (and dlib, for identity) import.

    Checked when a scorer is built, so that a missing install fails the job at submission rather
    than at its first candidate.
    """
    wanted = ["mediapipe"] + (["dlib", "face_recognition_models"] if identity else [])
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise FaceModelsUnavailable(
            f"the headshot tier needs {', '.join(missing)}: run `make install` "
            "(installs the 'faces' extra and mediapipe==0.10.21 without its OpenCV dependency)"
        )


def fit_for_analysis(rgb: NDArray[np.uint8], side: int = ANALYSIS_SIDE) -> NDArray[np.uint8]:
    """``rgb`` with its long side reduced to ``side`` (never enlarged)."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A detected face: its box in pixels (may extend past the frame) and the detector's score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def contains(self, x: float, y: float) -> bool:
        return self.left <= x <= self.right and self.top <= y <= self.bottom

    def iou(self, other: FaceBox) -> float:
        """Intersection over union of the two boxes."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(0.0, w) * max(0.0, h)
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0

    @classmethod
    def around(cls, points: NDArray[np.float32], score: float = 1.0) -> FaceBox:
        lo, hi = points.min(axis=0), points.max(axis=0)
        return cls(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), score)


class FaceModels:
    """Model handles for the face tier: loaded on first use, one instance per thread.

    One ``FaceModels`` serves a whole job (the :class:`~imagefunnel.scoring.Scorer` owns it); it also
    remembers the analyses of reference photos, so that their descriptors are computed once per job.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._references: OrderedDict[str, FaceAnalysis] = OrderedDict()

    def per_thread(self, key: str, build: Callable[[], _T]) -> _T:
        """The calling thread's instance of ``key``, built with ``build`` on its first use."""
        found = getattr(self._local, key, None)
        if found is None:
            found = build()
            setattr(self._local, key, found)
        return cast(_T, found)

    def detector(self) -> Any:
        return self.per_thread("detector", _build_detector)

    def far_detector(self) -> Any:
        return self.per_thread("far_detector", _build_far_detector)

    def mesh(self) -> Any:
        return self.per_thread("mesh", _build_mesh)

    def segmenter(self) -> Any:
        return self.per_thread("segmenter", _build_segmenter)

    def analyse(self, rgb: NDArray[np.uint8]) -> FaceAnalysis:
        """A lazy analysis of ``rgb`` (already at analysis size)."""
        return FaceAnalysis(rgb, self)

    def reference(self, image: DecodedImage) -> FaceAnalysis:
        """The analysis of a reference photo, shared by every candidate scored against it."""
        with self._lock:
            found = self._references.get(image.sha256)
            if found is None:
                found = FaceAnalysis(fit_for_analysis(image.rgb), self)
                self._references[image.sha256] = found
                if len(self._references) > _REFERENCE_CACHE:
                    self._references.popitem(last=False)
            else:
                self._references.move_to_end(image.sha256)
            return found


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the duration.

    mediapipe's C++ graph and TFLite log from their own threads while a graph first runs
    ("Created TensorFlow Lite XNNPACK delegate", "W0000 ... inference_feedback_manager.cc") and
    ignore Python's logging. Nothing of ours prints meanwhile; the lock keeps two threads that build
    models at once from saving each other's redirected descriptor.
    """
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as sink:
                os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _built(make: Callable[[], Any]) -> Any:
    """A mediapipe solution, built and run once on a blank frame with its native logging silenced:
    the log lines come from the first run, so afterwards the graph is quiet."""
    with quiet_native_stderr():
        solution = make()
        solution.process(np.zeros((32, 32, 3), dtype=np.uint8))
    return solution


def _solutions() -> Any:
    try:
        import mediapipe as mp
    except ImportError as exc:  # a broken install: find_spec saw it, the import failed
        raise FaceModelsUnavailable(f"mediapipe does not import: {exc}") from exc
    return mp.solutions


def _build_detector() -> Any:
    # Model 0 is the short-range model, made for faces within ~2 m: what a headshot is.
    solutions = _solutions()
    return _built(
        lambda: solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=DETECTION_CONFIDENCE
        )
    )


def _build_far_detector() -> Any:
    solutions = _solutions()
    return _built(
        lambda: solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=DETECTION_CONFIDENCE
        )
    )


def _build_mesh() -> Any:
    solutions = _solutions()
    return _built(
        lambda: solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=MAX_FACES,
            refine_landmarks=True,
            min_detection_confidence=MESH_DETECTION_CONFIDENCE,
        )
    )


def _build_segmenter() -> Any:
    solutions = _solutions()
    return _built(lambda: solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))


class FaceAnalysis:
    """Everything the headshot tier derives from one image's faces, each computed at most once.

    Safe to share between threads (reference photos are): every value is computed under the
    analysis's own lock, so two threads never run the same model twice on it.
    """

    def __init__(self, rgb: NDArray[np.uint8], models: FaceModels) -> None:
        self.rgb = rgb
        self.models = models
        self._memo: dict[str, object] = {}
        self._lock = threading.RLock()

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def derived(self, key: str, compute: Callable[[FaceAnalysis], _T]) -> _T:
        """``compute(self)``, computed once per analysis and remembered under ``key``."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute(self)
            return cast(_T, self._memo[key])

    @property
    def detections(self) -> tuple[FaceBox, ...]:
        """Faces the detector found, largest first."""
        return self.derived("detections", _detect)

    @property
    def meshes(self) -> tuple[Landmarks, ...]:
        """Landmarks of every face (or face fragment) the mesh found."""
        return self.derived("meshes", _mesh)

    @property
    def primary(self) -> FaceBox | None:
        """The portrait's face: the largest detection."""
        return self.detections[0] if self.detections else None

    @property
    def landmarks(self) -> Landmarks | None:
        """The mesh of the primary face, or None when there is no face or the mesh missed it."""
        return self.derived("landmarks", _primary_landmarks)

    @property
    def person_mask(self) -> NDArray[np.float32]:
        """Per-pixel probability (0..1) that the pixel belongs to a person."""
        return self.derived("person_mask", _segment)

    @property
    def skin_mask(self) -> NDArray[np.bool_] | None:
        """Skin of the primary face: the face oval minus eyes, brows and lips (None without a mesh)."""
        return self.derived("skin_mask", _skin)

    def mesh_boxes(self) -> Iterable[FaceBox]:
        return (FaceBox.around(points) for points in self.meshes)


def _detect(analysis: FaceAnalysis) -> tuple[FaceBox, ...]:
    result = analysis.models.detector().process(analysis.rgb)
    if not result.detections:
        # The short-range model misses faces under ~15 % of the frame; the full-range model finds
        # them, so that a small face is measured as small rather than reported missing.
        result = analysis.models.far_detector().process(analysis.rgb)
    h, w = analysis.height, analysis.width
    boxes = []
    for detection in result.detections or ():
        rel = detection.location_data.relative_bounding_box
        left, top = rel.xmin * w, rel.ymin * h
        boxes.append(
            FaceBox(left, top, left + rel.width * w, top + rel.height * h, float(detection.score[0]))
        )
    return tuple(sorted(boxes, key=lambda b: b.width * b.height, reverse=True))


def _mesh(analysis: FaceAnalysis) -> tuple[Landmarks, ...]:
    # The mesh's graph logs a warning (landmark_projection_calculator.cc) from its own thread the
    # first time it finds a face: until it has, its calls run with native stderr silenced.
    graph = analysis.models.mesh()
    found_before = analysis.models.per_thread("mesh_found_a_face", lambda: [False])
    if found_before[0]:
        result = graph.process(analysis.rgb)
    else:
        with quiet_native_stderr():
            result = graph.process(analysis.rgb)
        found_before[0] = bool(result.multi_face_landmarks)
    scale = np.array([analysis.width, analysis.height], dtype=np.float32)
    return tuple(
        np.array([(p.x, p.y) for p in face.landmark], dtype=np.float32) * scale
        for face in result.multi_face_landmarks or ()
    )


def _primary_landmarks(analysis: FaceAnalysis) -> Landmarks | None:
    primary = analysis.primary
    if primary is None:
        return None
    # The mesh whose nose tip lies in the primary box; meshes are not ordered by size.
    inside = [m for m in analysis.meshes if primary.contains(float(m[NOSE_TIP, 0]), float(m[NOSE_TIP, 1]))]
    if not inside:
        return None
    return max(inside, key=lambda m: float(np.ptp(m[:, 1])))


def _segment(analysis: FaceAnalysis) -> NDArray[np.float32]:
    mask = analysis.models.segmenter().process(analysis.rgb).segmentation_mask
    return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)


def polygon_mask(shape: tuple[int, int], points: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A 0/255 mask of the polygon through ``points`` (pixels)."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], (255,))
    return mask


def _skin(analysis: FaceAnalysis) -> NDArray[np.bool_] | None:
    marks = analysis.landmarks
    if marks is None:
        return None
    shape = (analysis.height, analysis.width)
    oval = polygon_mask(shape, marks[list(FACE_OVAL)])
    holes = np.zeros(shape, dtype=np.uint8)
    for part in (RIGHT_EYE, LEFT_EYE, RIGHT_BROW, LEFT_BROW, LIPS_OUTER):
        holes |= polygon_mask(shape, marks[list(part)])
    # Grow the holes and shrink the oval by ~3 % of the face height: lashes, lip edges and the
    # jaw line are not skin, and landmarks are a few pixels off.
    face_h = float(np.ptp(marks[:, 1]))
    k = max(3, round(face_h * 0.03)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    inside = np.asarray(cv2.erode(oval, kernel)) > 0
    holes_grown = np.asarray(cv2.dilate(holes, kernel)) > 0
    return inside & ~holes_grown
