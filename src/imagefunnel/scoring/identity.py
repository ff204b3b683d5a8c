"""Identity against reference photos: dlib's 128-d face descriptors and their L2 distance.

The weights come from the ``face_recognition_models`` package (CC0). It is located with
``importlib.util.find_spec`` and never imported: its ``__init__`` imports ``pkg_resources``, which new
setuptools no longer ship. Faces are aligned with the 5-point shape model (the 68-point model's
training data carries commercial-use limits) seeded with the mediapipe box of the primary face.

The descriptor network's forward pass runs in :mod:`~imagefunnel.scoring.dlib_resnet` (the same
weights, read from dlib's file, on NumPy's BLAS: ~17 ms of one core instead of dlib's ~80); dlib
still fits the 5 points and cuts the 150x150 chip. If that file cannot be read there, a one-line
warning is logged and dlib's own network computes the descriptors.

dlib's distance is ~0.3–0.45 for two photos of one person and ~0.7–1.0 for two people; the model's
authors use 0.6 as the cut. A reference photo's descriptor is computed once per job: reference
analyses live in the job's :class:`~imagefunnel.scoring.faces.FaceModels`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from imagefunnel.errors import ImageError, SpecError
from imagefunnel.imaging import DecodedImage, decode_image, read_image_file
from imagefunnel.scoring.blas_threads import use_one_blas_thread
from imagefunnel.scoring.dlib_resnet import CHIP_SIZE, DlibNetFormatError, FaceNet, read_face_net
from imagefunnel.scoring.faces import FaceAnalysis, FaceModels, FaceModelsUnavailable

__all__ = [
    "check_references",
    "descriptor",
    "identity_distance",
    "load_references",
    "model_dir",
    "read_reference",
]

Descriptor = NDArray[np.float64]

_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_ENCODER_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
_CHIP_PADDING = 0.25  # what dlib's compute_face_descriptor cuts around the face

_log = logging.getLogger(__name__)


def model_dir() -> Path:
    """Where ``face_recognition_models`` keeps its ``.dat`` files (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelsUnavailable("face_recognition_models is not installed: run `make install`")
    folder = Path(spec.origin).parent / "models"
    if not (folder / _ENCODER_MODEL).is_file():
        raise FaceModelsUnavailable(
            f"{folder / _ENCODER_MODEL} is missing: reinstall face_recognition_models"
        )
    return folder


_NETS_LOCK = threading.Lock()
_NETS: dict[Path, FaceNet | None] = {}


def _face_net(path: Path) -> FaceNet | None:
    """The descriptor network read from ``path``, once per process and shared by every thread (its
    weights are only read); None, with one warning, where the file is not the network we read."""
    with _NETS_LOCK:
        if path not in _NETS:
            try:
                _NETS[path] = read_face_net(path)
            except DlibNetFormatError as exc:
                _log.warning("%s: %s; dlib computes the face descriptors instead (slower)", path.name, exc)
                _NETS[path] = None
            else:
                use_one_blas_thread()
        return _NETS[path]


@dataclass(frozen=True, slots=True)
class _Dlib:
    shape: Any  # dlib.shape_predictor
    net: FaceNet | None  # our forward pass, shared by all threads
    encoder: Any  # dlib.face_recognition_model_v1 where net is None, else None


def _build_dlib() -> _Dlib:
    try:
        import dlib
    except ImportError as exc:
        raise FaceModelsUnavailable(f"dlib does not import: {exc} (install dlib-bin)") from exc
    folder = model_dir()
    net = _face_net(folder / _ENCODER_MODEL)
    encoder = dlib.face_recognition_model_v1(str(folder / _ENCODER_MODEL)) if net is None else None
    return _Dlib(dlib.shape_predictor(str(folder / _SHAPE_MODEL)), net, encoder)


def _describe(analysis: FaceAnalysis) -> Descriptor | None:
    box = analysis.primary
    if box is None:
        return None
    models = analysis.models.per_thread("dlib", _build_dlib)
    import dlib  # imported by _build_dlib already (or it raised FaceModelsUnavailable)

    rect = dlib.rectangle(round(box.left), round(box.top), round(box.right), round(box.bottom))
    rgb = np.ascontiguousarray(analysis.rgb)
    shape = _checked_shape(models.shape(rgb, rect), analysis.landmarks, rect)
    if models.net is None:
        return np.asarray(models.encoder.compute_face_descriptor(rgb, shape), dtype=np.float64)
    # the chip dlib's compute_face_descriptor cuts (same size, padding and interpolation)
    chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=_CHIP_PADDING)
    return models.net.describe(np.asarray(chip, dtype=np.uint8)).astype(np.float64)


# dlib's 5 points (subject's left eye outer and inner corner, right eye outer and inner, below the
# nose) as face-mesh landmark indices.
_MESH_FIVE = (263, 362, 33, 133, 2)
_MAX_DISAGREEMENT = 0.15  # of the distance between the outer eye corners


def _checked_shape(predicted: Any, landmarks: Any, rect: Any) -> Any:
    """dlib's 5-point fit, unless it disagrees with the face mesh, then the mesh's own 5 points.

    The 5-point predictor is started from the detector box; on some crops a one-pixel change of the
    box throws an eye point tens of pixels off and the distance to the same person jumps from 0.35
    to 0.75. The mesh locates those five points independently, so a large disagreement means the
    predictor slipped. When they agree, dlib's own fit is kept (its descriptor was trained on it).
    """
    if landmarks is None:
        return predicted
    import dlib

    mesh = np.asarray([landmarks[i] for i in _MESH_FIVE], dtype=np.float64)
    fit = np.asarray([(p.x, p.y) for p in predicted.parts()], dtype=np.float64)
    scale = max(float(np.linalg.norm(mesh[0] - mesh[2])), 1.0)
    if float(np.max(np.linalg.norm(fit - mesh, axis=1))) <= _MAX_DISAGREEMENT * scale:
        return predicted
    return dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in mesh])


def descriptor(analysis: FaceAnalysis) -> Descriptor | None:
    """The primary face's 128-d descriptor (None without a face); computed once per analysis."""
    return analysis.derived("identity.descriptor", _describe)


def read_reference(path: Path, index: int) -> bytes:
    """The bytes of reference photo ``index``: a pipe or device is refused, never opened (it would
    hang the job or read forever); SpecError names the photo and the field."""
    try:
        return read_image_file(path)
    except ImageError as exc:
        raise SpecError(f"reference photo {path}: {exc}", field=f"references[{index}]") from exc


def load_references(paths: Sequence[Path]) -> tuple[DecodedImage, ...]:
    """Read and decode a job's reference photos once; SpecError names the one that is unusable."""
    images = []
    for index, path in enumerate(paths):
        data = read_reference(path, index)
        try:
            images.append(decode_image(data))
        except ImageError as exc:
            raise SpecError(f"reference photo {path}: {exc}", field=f"references[{index}]") from exc
    return tuple(images)


def check_references(models: FaceModels, references: Sequence[DecodedImage]) -> None:
    """Raise SpecError naming the first reference photo in which no face is found.

    Runs the detector on each reference once; the analyses stay in ``models`` for the whole job.
    """
    for index, image in enumerate(references):
        if models.reference(image).primary is None:
            raise SpecError(
                f"reference photo {index + 1} has no detectable face; identity and skin tone need one",
                field=f"references[{index}]",
            )


def identity_distance(analysis: FaceAnalysis, references: Sequence[DecodedImage]) -> float:
    """L2 distance from the candidate's face to the nearest reference face; NaN without a face.

    The nearest, not the mean: references show the person from several angles and lights, and a
    candidate should match at least one of them closely.
    """
    mine = descriptor(analysis)
    theirs = [d for image in references if (d := descriptor(analysis.models.reference(image))) is not None]
    if mine is None or not theirs:
        return math.nan
    return float(min(np.linalg.norm(mine - other) for other in theirs))
