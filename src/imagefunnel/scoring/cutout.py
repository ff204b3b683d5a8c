"""Tier 2, ``background_removal``: is the RGBA cutout a clean matte of the photo's subject?

The candidate is the cutout (its alpha channel; its colours are shown over white to tier 1, which
judges that composite) and the job's ``source`` is the photo it was cut from. Every measure is taken
at analysis size (long side 512 px) against the *photo*, never against another segmentation model:
the matte's outline must sit on the photo's own edges, the photo's subject (its face when it has
one, else the centre of the frame) must be kept, and the matte must be decided (opaque or clear),
in one piece, without holes, and neither empty nor full. Default thresholds sit between the
cutouts of the ten market portraits and the broken mattes of :mod:`imagefunnel.evaluation.mask_defects`
(``tests/scoring/test_cutout.py`` asserts both sides).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring.features import ANALYSIS_SIDE, ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, Need, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = [
    "BACKGROUND_REMOVAL",
    "alpha_undecided",
    "edge_alignment",
    "halo_width",
    "mask_extent",
    "mask_fragments",
    "mask_holes",
    "subject_coverage",
]

BACKGROUND_REMOVAL = "background_removal"
_USE = frozenset({BACKGROUND_REMOVAL})
_SOURCE = frozenset({Need.SOURCE})
_HIGHER = Direction.HIGHER_IS_BETTER
_LOWER = Direction.LOWER_IS_BETTER
_register = default_registry.register
_OPAQUE = 128  # alpha at or above this is "kept"
_UNDECIDED = (13, 242)  # alpha strictly between these is neither kept nor removed (5-95 %)

Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Cut:
    """The cutout's matte and the source photo, both at analysis size."""

    alpha: NDArray[np.uint8]
    kept: Mask
    gray: NDArray[np.float32] | None  # the source's luma; None without a source


_views: weakref.WeakKeyDictionary[ImageFeatures, _Cut] = weakref.WeakKeyDictionary()


def _analysis_size(image: DecodedImage) -> tuple[int, int]:
    scale = min(1.0, ANALYSIS_SIDE / max(image.width, image.height))
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))


def _cut(features: ImageFeatures, context: ScoringContext | None) -> _Cut:
    # Several dimensions share one resize per candidate; the cache dies with the features object.
    found = _views.get(features)
    if found is not None:
        return found
    image = features.image
    size = _analysis_size(image)
    alpha_full = image.alpha if image.alpha is not None else np.full(image.rgb.shape[:2], 255, np.uint8)
    alpha = np.asarray(cv2.resize(alpha_full, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    gray: NDArray[np.float32] | None = None
    source = context.source if context is not None else None
    if source is not None:
        # The cutout may come back at another size than it was sent: compare on the same grid.
        resized = cv2.resize(np.asarray(source.gray), size, interpolation=cv2.INTER_AREA)
        gray = np.asarray(cv2.GaussianBlur(resized.astype(np.float32), (0, 0), 1.0), dtype=np.float32)
    view = _Cut(alpha=alpha, kept=alpha >= _OPAQUE, gray=gray)
    _views[features] = view
    return view


def _outline(kept: Mask) -> Mask:
    """Pixels of the matte's outline, not counting where the subject runs off the frame."""
    as_u8 = kept.astype(np.uint8)
    edge = cv2.morphologyEx(as_u8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edge[[0, -1], :] = False
    edge[:, [0, -1]] = False
    return np.asarray(edge, dtype=np.bool_)


def _gradient(gray: NDArray[np.float32]) -> NDArray[np.float32]:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(cv2.magnitude(gx, gy), dtype=np.float32)


@_register(
    DimensionInfo(
        name="mask_extent",
        tier=2,
        use_cases=_USE,
        direction=_HIGHER,
        value_range=(0.0, 0.5),
        unit="fraction of the frame",
        default_threshold=0.02,
        cost=0.5,
        fail_label="empty or full mask",
        description="The smaller of the kept and the removed share of the frame: 0 for a cutout "
        "that keeps nothing or everything.",
    )
)
def mask_extent(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    kept = float(_cut(features, context).kept.mean())
    return min(kept, 1.0 - kept)


@_register(
    DimensionInfo(
        name="alpha_undecided",
        tier=2,
        use_cases=_USE,
        direction=_LOWER,
        value_range=(0.0, 1.0),
        unit="fraction of the kept area",
        default_threshold=0.12,
        cost=0.5,
        fail_label="soft or missing alpha",
        description="Pixels whose alpha is neither clear nor opaque (5-95 %), per kept pixel. Good "
        "mattes are soft only along the outline (hair); a smeared, low-resolution matte is soft "
        "everywhere. An output without an alpha channel counts as fully undecided.",
    )
)
def alpha_undecided(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    if features.image.alpha is None:
        return 1.0
    cut = _cut(features, context)
    lo, hi = _UNDECIDED
    undecided = np.count_nonzero((cut.alpha > lo) & (cut.alpha < hi))
    return min(1.0, undecided / max(1, int(np.count_nonzero(cut.kept))))


@_register(
    DimensionInfo(
        name="mask_holes",
        tier=2,
        use_cases=_USE,
        direction=_LOWER,
        value_range=(0.0, 1.0),
        unit="fraction of the kept area",
        default_threshold=0.01,
        cost=0.6,
        fail_label="holes in the subject",
        description="Removed regions enclosed by the kept subject (not reachable from the frame's "
        "border), per kept pixel.",
    )
)
def mask_holes(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    kept = _cut(features, context).kept
    removed = (~kept).astype(np.uint8)
    _, labels = cv2.connectedComponents(removed, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.isin(labels, border, invert=True) & (labels > 0)
    return float(np.count_nonzero(enclosed)) / max(1, int(np.count_nonzero(kept)))


@_register(
    DimensionInfo(
        name="mask_fragments",
        tier=2,
        use_cases=_USE,
        direction=_LOWER,
        value_range=(0.0, 1.0),
        unit="fraction of the kept area",
        default_threshold=0.02,
        cost=0.6,
        fail_label="specks kept around the subject",
        description="Kept area outside the largest kept piece, per kept pixel: confetti of "
        "background the matte failed to remove.",
    )
)
def mask_fragments(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    kept = _cut(features, context).kept.astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
    if count <= 2:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.sum() - areas.max()) / float(areas.sum())


@_register(
    DimensionInfo(
        name="edge_alignment",
        tier=2,
        use_cases=_USE,
        needs=_SOURCE,
        direction=_HIGHER,
        value_range=(0.0, float("inf")),
        unit="ratio",
        default_threshold=2.5,
        cost=1.0,
        fail_label="outline off the subject's edges",
        description="Mean gradient of the source photo along the matte's outline over its mean "
        "gradient in the whole frame: an outline traced on the subject's edges scores well above 1, "
        "one that runs through flat background or across the subject near 1 or below.",
        decimals=2,
    )
)
def edge_alignment(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    cut = _cut(features, context)
    if cut.gray is None:
        return 0.0
    outline = _outline(cut.kept)
    if not outline.any():
        return 0.0
    magnitude = _gradient(cut.gray)
    overall = float(magnitude.mean())
    if overall < 1e-3:
        return 0.0  # a flat photo has no edges to follow
    # A 3x3 max: the photo's edge may sit one pixel either side of the matte's 50 % line.
    near = cv2.dilate(magnitude, np.ones((3, 3), np.uint8))
    return float(near[outline].mean()) / overall


@_register(
    DimensionInfo(
        name="halo_width",
        tier=2,
        use_cases=_USE,
        needs=_SOURCE,
        direction=_LOWER,
        value_range=(0.0, float("inf")),
        unit="pixels at 512 px",
        default_threshold=4.0,
        cost=1.2,
        fail_label="halo of background around the subject",
        description="Median distance from the matte's outline inwards to the nearest strong edge of "
        "the photo inside the kept area: the width of the band of background kept around the "
        "subject (a fringe, a halo). Good outlines sit on the edge (1-3 px).",
        decimals=1,
    )
)
def halo_width(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    cut = _cut(features, context)
    if cut.gray is None:
        return float("inf")
    outline = _outline(cut.kept) & cut.kept
    if not outline.any():
        return 0.0
    magnitude = _gradient(cut.gray)
    strong = magnitude >= max(1.0, float(np.percentile(magnitude, 85)))
    inner = cv2.erode(cut.kept.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    edges = strong & inner
    if not edges.any():
        return float(max(cut.kept.shape))
    distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 3)
    return float(np.median(distance[outline]))


class _SubjectFinder:
    """Where the photo's subject is: its largest face (mediapipe's bundled detector) or, without a
    face, the central fifth of the frame. Cached per source photo."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._detector: Any = None
        self._found: weakref.WeakKeyDictionary[DecodedImage, tuple[float, float, float, float]] = (
            weakref.WeakKeyDictionary()
        )

    def region(self, source: DecodedImage) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in fractions of the frame."""
        with self._lock:
            found = self._found.get(source)
            if found is None:
                found = self._find(source)
                self._found[source] = found
        return found

    def _find(self, source: DecodedImage) -> tuple[float, float, float, float]:
        box = self._face(source)
        if box is None:
            return (0.4, 0.4, 0.6, 0.6)
        x, y, w, h = box
        # The core of the face box: the detector's box reaches past the cheeks into the background.
        return (x + 0.15 * w, y + 0.1 * h, x + 0.85 * w, y + 0.9 * h)

    def _face(self, source: DecodedImage) -> tuple[float, float, float, float] | None:
        if self._detector is None:
            try:
                from mediapipe.python.solutions import face_detection
            except ImportError:
                return None
            from imagefunnel.scoring.faces import quiet_native_stderr

            # TFLite and absl log to fd 2 while a graph first runs: build and warm it up silenced.
            with quiet_native_stderr():
                detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
                detector.process(np.zeros((32, 32, 3), dtype=np.uint8))
            self._detector = detector
        result = self._detector.process(np.ascontiguousarray(source.rgb))
        boxes = [d.location_data.relative_bounding_box for d in result.detections or ()]
        if not boxes:
            return None
        best = max(boxes, key=lambda b: b.width * b.height)
        return (float(best.xmin), float(best.ymin), float(best.width), float(best.height))


_subjects = _SubjectFinder()


@_register(
    DimensionInfo(
        name="subject_coverage",
        tier=2,
        use_cases=_USE,
        needs=_SOURCE,
        direction=_HIGHER,
        value_range=(0.0, 1.0),
        unit="mean alpha",
        default_threshold=0.9,
        cost=1.5,
        fail_label="subject cut away",
        description="Mean alpha over the photo's subject: the core of its largest face (found on "
        "the source photo, not on the cutout), or the central fifth of the frame when it has no "
        "face. A matte that drops or inverts the subject keeps little of it.",
        decimals=2,
    )
)
def subject_coverage(features: ImageFeatures, context: ScoringContext | None = None) -> float:
    source = context.source if context is not None else None
    if source is None:
        return 0.0
    alpha = _cut(features, context).alpha
    h, w = alpha.shape
    x0, y0, x1, y1 = _subjects.region(source)
    top, bottom = max(0, int(y0 * h)), min(h, max(int(y1 * h), int(y0 * h) + 1))
    left, right = max(0, int(x0 * w)), min(w, max(int(x1 * w), int(x0 * w) + 1))
    region = alpha[top:bottom, left:right]
    return float(region.mean()) / 255.0 if region.size else 0.0
