"""Tier 3: visible text and branding, read by OCR (the PP-OCRv4 ONNX models in rapidocr-onnxruntime).

Two dimensions share one OCR pass per image: ``text_area`` (the share of the frame covered by
confidently read text) and ``text_chars`` (how many letters and digits were read). Both default to
"none at all", the built-in "no visible branding" rule of every use case; a spec may allow some.

OCR sees things in photos: star-shaped insignia read as "★★" at 0.64, a shirt fold as "D" at 0.94, a
plain background as "O" at 0.78, a nose and mouth filling the frame as "30" at 0.94. So a box counts
only when it is read with confidence (≥ 0.8), holds at least two letters or digits (four when it is
taller than 15 % of the frame), and is tall enough to be legible. That misses a one-letter logo; it
catches the "ACME SALE 50% OFF" overlay, logo badges and corner watermarks 2 % of the frame high.

The detector runs on the tier-1 analysis copy (long side 512 px; smaller images are enlarged to that,
for OCR only): about 60 ms of one core, plus about 60 ms of recognition when it finds a box (a
nose and mouth often are one), the most expensive dimension of tiers 1 and 3, so it is declared
expensive and runs last in the cascade. Text under about 1.5 % of the long side high may be missed.

No cheaper pass can vouch for "no text" first: the detector on a 256-320 px copy missed faint corner
watermarks that the 512 px pass reads (on 320 px its strongest response to them, 4e-7, lay within the
range clean photos give), and a morphological gate fired on half the clean photos and missed them too.
"""

from __future__ import annotations

import importlib.util
import math
import os
import queue
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.features import ANALYSIS_SIDE, ImageFeatures
from imagefunnel.scoring.registry import DimensionInfo, ScorerRegistry, ScoringContext, default_registry
from imagefunnel.scoring.verdict import Direction

__all__ = ["TEXT_COST", "TextBox", "TextPolicy", "TextReader", "TextReading", "read_boxes", "register_text"]

# The detector reads the 512 px analysis copy as it is. 448 px costs 35 % less but missed faint
# semi-transparent watermarks 2 % of the frame high that 512 px reads (dev sets, seeds 0 and 1).
OCR_SIDE = ANALYSIS_SIDE
TEXT_COST = 500.0  # above every tier-1/2 dimension: OCR is the slowest check and rarely the one that fails
_PACKAGE = "rapidocr_onnxruntime"
_MODELS = ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx")


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPolicy:
    """What counts as visible text. Measured on the portraits: see the module docstring."""

    min_score: float = 0.80  # recognition confidence
    min_chars: int = 2  # letters or digits in the box
    min_height: float = 0.012  # box height as a fraction of the OCR input's long side (6 px at 512)
    # A line taller than this share of the long side must hold more letters: in a face close-up the
    # nose and mouth read as a "30" 29 % of the frame high, at 0.94. Slogans and logos are 3-8 %.
    tall_height: float = 0.15
    tall_min_chars: int = 4


@dataclass(frozen=True, slots=True)
class TextBox:
    """One box of text as read by OCR. ``points`` are the 4 corners in image pixels."""

    text: str
    score: float
    points: tuple[tuple[float, float], ...]

    @property
    def chars(self) -> int:
        """Letters and digits: punctuation and symbols ("★", "%") are not text a viewer reads."""
        return sum(ch.isalnum() for ch in self.text)

    @property
    def height(self) -> float:
        """Side length across the text line (the shorter pair of sides of the quadrilateral)."""
        p = np.asarray(self.points, dtype=np.float64)
        sides = np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1)
        return float(min(sides[0] + sides[2], sides[1] + sides[3]) / 2)


@dataclass(frozen=True, slots=True)
class TextReading:
    """The boxes that count as visible text in one image, and what they add up to."""

    boxes: tuple[TextBox, ...]
    area: float  # fraction of the frame they cover (overlaps counted once)
    chars: int

    @property
    def text(self) -> str:
        return " | ".join(box.text for box in self.boxes)


def read_boxes(
    boxes: Iterable[TextBox], *, width: int, height: int, policy: TextPolicy = TextPolicy()
) -> TextReading:
    """Keep the boxes the policy accepts and measure them. Pure: the decision logic, without OCR."""
    side = max(width, height)

    def counts(box: TextBox) -> bool:
        tall = box.height > policy.tall_height * side
        needed = policy.tall_min_chars if tall else policy.min_chars
        return (
            box.score >= policy.min_score and box.chars >= needed and box.height >= policy.min_height * side
        )

    kept = tuple(box for box in boxes if counts(box))
    if not kept:
        return TextReading((), 0.0, 0)
    mask = np.zeros((height, width), dtype=np.uint8)
    for box in kept:
        cv2.fillPoly(mask, [np.round(np.asarray(box.points)).astype(np.int32)], (1,))
    area = float(np.count_nonzero(mask)) / mask.size
    return TextReading(kept, area, sum(box.chars for box in kept))


class _Ocr(Protocol):
    def __call__(self, img: NDArray[np.uint8]) -> tuple[Any, Any]: ...


class TextReader:
    """Runs OCR at most once per image and serves both text dimensions.

    An OCR engine keeps per-call state, so one is never shared by two calls at once: engines are
    lent from a small pool, created on demand (about 0.3 s each) up to one per core, so that a
    wide thread pool does not load one per thread. The last reading is remembered per thread, keyed
    by the image's features object: the scorer measures one image's dimensions in one thread.
    """

    def __init__(
        self,
        *,
        policy: TextPolicy = TextPolicy(),
        model_dir: Path | None = None,
        side: int = OCR_SIDE,
        max_engines: int | None = None,
    ) -> None:
        self._policy = policy
        self._model_dir = model_dir
        self._side = side
        self._local = threading.local()
        self._idle: queue.LifoQueue[_Ocr] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_engines or os.cpu_count() or 1)

    def unavailable(self) -> str | None:
        """Why OCR cannot run here (package or model files missing), or None when it can."""
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.origin is None:
            return (
                f"OCR needs {_PACKAGE}==1.4.4: run `make install` (installs it without its OpenCV dependency)"
            )
        folder = self._model_folder(spec.origin)
        missing = [name for name in _MODELS if not (folder / name).is_file()]
        if missing:
            return f"OCR model files missing in {folder}: {', '.join(missing)}"
        return None

    def _model_folder(self, origin: str) -> Path:
        return self._model_dir or Path(origin).parent / "models"

    def read(self, features: ImageFeatures) -> TextReading:
        cached = getattr(self._local, "last", None)
        if cached is not None and cached[0]() is features:
            reading: TextReading = cached[1]
            return reading
        bgr = _ocr_input(features, self._side)  # the engine expects BGR
        boxes = self._ocr_boxes(bgr)
        reading = read_boxes(boxes, width=bgr.shape[1], height=bgr.shape[0], policy=self._policy)
        self._local.last = (weakref.ref(features), reading)
        return reading

    def _ocr_boxes(self, bgr: NDArray[np.uint8]) -> list[TextBox]:
        with self._slots:  # at most max_engines calls at once, each with an engine of its own
            try:
                engine = self._idle.get_nowait()
            except queue.Empty:
                engine = self._load()
            try:
                result, _ = engine(bgr)
            finally:
                self._idle.put(engine)
        return [_box(item) for item in result or ()]

    def _load(self) -> _Ocr:
        from rapidocr_onnxruntime import RapidOCR  # heavy: import on first use only

        models = {}
        if self._model_dir is not None:
            names = ("det", "rec", "cls")
            models = {
                f"{n}_model_path": str(self._model_dir / m) for n, m in zip(names, _MODELS, strict=True)
            }
        # "max" keeps our input size as it is (the default "min" upscales it to 736 px: 2x slower);
        # one thread per session because the executor already scores images in parallel.
        engine = RapidOCR(det_limit_type="max", intra_op_num_threads=1, inter_op_num_threads=1, **models)
        _fast_det_preprocess(engine.text_det)
        spec = importlib.util.find_spec(_PACKAGE)
        assert spec is not None and spec.origin is not None  # the probe said it is installed
        folder = self._model_folder(spec.origin)
        det, rec, cls = (folder / name for name in _MODELS)
        engine.text_det.infer.session = _session(det)
        engine.text_rec.session.session = _session(rec)
        engine.text_cls.infer.session = _session(cls)
        ocr: _Ocr = engine
        return ocr


def _session(model: Path) -> Any:
    """An ONNX session like rapidocr's own (every graph optimisation, one thread), but with the CPU
    memory arena that rapidocr turns off: without it every run allocates each intermediate tensor
    afresh, which made the 512 px detector 30 % slower (76 vs 58 ms of one core; outputs identical,
    the same kernels run on the same data)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.intra_op_num_threads = 1  # the executor already scores several images in parallel
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


class _LutDetPreProcess:
    """The detector's input normalisation as a lookup per 8-bit level, channel by channel.

    rapidocr normalises in float64 (its mean and std are float64 arrays) and then casts to float32:
    about 6 ms per 512 px image, the costliest step around the detector. The table is made by
    running the library's own ``normalize`` on every level, so each pixel gets the very same float32
    it would have got (a test checks this); the result is written channel-first as the model wants.
    """

    def __init__(self, inner: Any, table: NDArray[np.float32]) -> None:
        self._inner = inner
        self._table = table  # (3, 256): channel, level

    def __call__(self, img: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        resized = self._inner.resize(img)
        if resized is None:
            return None
        chw = np.empty((1, 3, *resized.shape[:2]), dtype=np.float32)
        for channel in range(3):
            chw[0, channel] = self._table[channel][resized[:, :, channel]]
        return chw


def det_level_table(preprocess: Any) -> NDArray[np.float32]:
    """What ``preprocess`` (a rapidocr ``DetPreProcess``) makes of each level in each channel."""
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # (256, 1, 3)
    normalised = np.asarray(preprocess.normalize(levels)).astype(np.float32)
    return np.ascontiguousarray(normalised[:, 0, :].T)


def _fast_det_preprocess(detector: Any) -> None:
    """Make ``detector`` (rapidocr's ``TextDetector``) normalise by lookup: same input, less CPU."""
    make = detector.get_preprocess
    table = det_level_table(make(OCR_SIDE))  # mean and std are the detector's, whatever the size

    def get_preprocess(max_wh: int) -> _LutDetPreProcess:
        return _LutDetPreProcess(make(max_wh), table)

    detector.get_preprocess = get_preprocess


def _ocr_input(features: ImageFeatures, side: int) -> NDArray[np.uint8]:
    """The image in BGR with its long side at ``side``: the analysis copy itself when it has that
    size (any 1 MP or larger image), shared with the NSFW detector. Small images are enlarged: the
    detector misses 8-px letters, not 30-px ones. Only OCR sees that copy; quality measures never
    upscale."""
    h, w = features.analysis_rgb.shape[:2]
    scale = side / max(h, w)
    if scale == 1.0:
        return features.analysis_bgr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    resized = cv2.resize(features.analysis_rgb, size, interpolation=interpolation)
    return np.asarray(cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), dtype=np.uint8)


def _box(item: Sequence[Any]) -> TextBox:
    points, text, score = item[0], item[1], item[2]
    corners = tuple((float(x), float(y)) for x, y in points)
    return TextBox(str(text), float(score), corners)


def register_text(registry: ScorerRegistry, reader: TextReader) -> None:
    """Register ``text_area`` and ``text_chars``, both read by ``reader``, into ``registry``."""

    def text_area(features: ImageFeatures, context: ScoringContext | None = None) -> float:
        return reader.read(features).area

    def text_chars(features: ImageFeatures, context: ScoringContext | None = None) -> float:
        return float(reader.read(features).chars)

    area = DimensionInfo(
        name="text_area",
        tier=3,
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, 1.0),
        unit="fraction of the frame",
        default_threshold=0.0,
        cost=TEXT_COST,
        fail_label="visible text or branding",
        description="Share of the frame covered by text read with confidence ≥ 0.8 (at least two "
        "letters or digits, at least 1.2 % of the long side high). 0 for a clean photo.",
        decimals=4,
    )
    chars = DimensionInfo(
        name="text_chars",
        tier=3,
        direction=Direction.LOWER_IS_BETTER,
        value_range=(0.0, math.inf),
        unit="letters and digits",
        default_threshold=0.0,
        cost=TEXT_COST + 1.0,  # free after text_area (same OCR pass); keeps the order stable
        fail_label="visible text or branding",
        description="Letters and digits read with confidence (same OCR pass and acceptance rules as "
        "text_area). Lets a spec allow a short signature but not a slogan.",
        decimals=0,
    )
    registry.add(area, text_area, probe=reader.unavailable)
    registry.add(chars, text_chars, probe=reader.unavailable)


register_text(default_registry, TextReader())
