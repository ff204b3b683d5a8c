"""The market's "image model": realistic variations of real portraits, some with labelled defects.

Generation is split in two so the truth is known the moment a request is accepted:

* ``plan_image`` draws every random choice (source photo, variation, defect and its strength) and
  returns a frozen ``Truth`` — the complete recipe, and the label the scorers are graded against;
* ``render`` turns a ``Truth`` into encoded bytes. It is a pure function, so the server can render
  lazily, evict rendered bytes, and render again later with identical output.

A request with reference photos asks for a *subject*: the person those photos show (see
``market.subjects``). The plan then renders one of that person's photos — or, at the provider's
``identity_drift_rate``, someone else's, which the truth labels ``identity_drift``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import cv2
import numpy as np

from imagefunnel.market import face_defects
from imagefunnel.market.defects import FACE_DEFECTS, Defect, Image, apply_pixel_defect, truncate
from imagefunnel.market.framing import DEFAULT_FACE_BOX, FACE_BOXES, FaceBox, Variation, vary
from imagefunnel.market.products import (
    DEFAULT_PRODUCT_MIX,
    PRODUCT_DEFECTS,
    ProductAsk,
    ProductScene,
    plan_scene,
    product_kinds,
    render_scene,
)
from imagefunnel.market.subjects import SubjectIndex, identity_of
from imagefunnel.scoring.faces import FaceModels

__all__ = [
    "IDENTITY_DRIFT",
    "AssetLibrary",
    "ImageFormat",
    "Truth",
    "Variation",
    "encode",
    "plan_image",
    "plan_product_image",
    "render",
]

ImageFormat = Literal["png", "jpeg", "webp"]
# The truth label of an output that shows someone other than the reference photos' subject.
IDENTITY_DRIFT = "identity_drift"

# Photos in the asset folder that are not human faces: never a headshot source.
_NOT_FACES = frozenset({"dog_donna.jpg"})
# A source must be at least this fraction of the requested size (capped at the 512 px asset size),
# so a clean output is never a small face blown up and called sharp.
_MIN_SOURCE_FRACTION = 0.85
_ASSET_SIDE = 512
_JPEG_QUALITY = 92
_WEBP_QUALITY = 90
# How far two clean generations of one subject may differ. Wide enough that they are not perceptual
# near-duplicates (phash distance > 4, which the funnel rejects), narrow enough that the face stays
# whole in the frame, sharp, evenly exposed and of its own skin tone.
_ZOOM = (0.80, 1.0)  # window side relative to the largest window that fits (1 = widest framing)
_SHIFT_X = 0.55  # horizontal offset, as a fraction of the free half-margin
_SHIFT_Y = 0.4  # vertical offset: less room, the chin and the top of the head must stay in
_ROTATION_DEG = 4.0
_TINT = 14.0  # background tint, in RGB levels, faded in towards the corners only
# Face defects are placed with the face models' landmarks, which need a face of some size to find:
# below this output side they are not drawn (a label the picture could not carry would be a lie).
MIN_FACE_DEFECT_SIDE = 128


@dataclass(frozen=True, slots=True)
class Truth:
    """What the market actually produced for one request; kept away from scorers and adapters."""

    provider: str
    source: str
    width: int
    height: int
    seed: int
    image_format: ImageFormat
    variation: Variation
    defect: Defect | None = None
    strength: float = 0.0
    garbage: bool = False  # black/truncated output injected as a provider fault, not a model defect
    subject: str | None = None  # the person the request's reference photos show (None: no/unknown)
    product: ProductScene | None = None  # a product shot (``source`` is then "product:<shape>")

    @property
    def identity_drift(self) -> bool:
        """Asked for ``subject``, rendered someone else."""
        return self.product is None and self.subject is not None and identity_of(self.source) != self.subject

    @property
    def labels(self) -> tuple[str, ...]:
        """Every hidden label of this output: its defect, ``identity_drift``, both or none."""
        found = (self.defect.value,) if self.defect is not None else ()
        return (*found, IDENTITY_DRIFT) if self.identity_drift else found

    @property
    def clean(self) -> bool:
        return self.defect is None and not self.identity_drift


class AssetLibrary:
    """The real portrait photos, decoded once (RGB ``uint8``), with their fingerprints and face boxes.

    Immutable after construction, except ``face_models``, whose mediapipe graphs are built on first
    use (one set per render thread), i.e. only once a face defect is actually rendered.
    """

    def __init__(self) -> None:
        folder = resources.files("imagefunnel.market") / "assets" / "portraits"
        files: dict[str, bytes] = {}
        images: dict[str, Image] = {}
        for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if not item.name.endswith(".jpg") or item.name in _NOT_FACES:
                continue
            data = item.read_bytes()
            bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:  # pragma: no cover - the shipped assets are valid JPEGs
                raise ValueError(f"cannot decode portrait asset {item.name}")
            files[item.name] = data
            images[item.name] = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        self._files: Mapping[str, bytes] = files
        self._images: Mapping[str, Image] = images
        self._subjects = SubjectIndex(files, images)
        self.face_models = FaceModels()

    @property
    def names(self) -> list[str]:
        return list(self._images)

    def image(self, name: str) -> Image:
        return self._images[name]

    def file(self, name: str) -> bytes:
        """The asset's JPEG bytes, as shipped (what a client would send as a reference photo)."""
        return self._files[name]

    def face_box(self, name: str) -> FaceBox:
        return FACE_BOXES.get(name, DEFAULT_FACE_BOX)

    def photos_of(self, identity: str) -> list[str]:
        return [name for name in self._images if identity_of(name) == identity]

    def subject(self, references: Sequence[bytes]) -> str | None:
        """The person ``references`` show, if they are (copies of) photos of this library."""
        return self._subjects.subject(references)

    def eligible(self, width: int, height: int) -> list[str]:
        """Sources large enough for the requested size; the largest ones if none is."""
        need = _MIN_SOURCE_FRACTION * min(max(width, height), _ASSET_SIDE)
        fits = [name for name, img in self._images.items() if min(img.shape[:2]) >= need]
        if fits:
            return fits
        largest = max(min(img.shape[:2]) for img in self._images.values())
        return [name for name, img in self._images.items() if min(img.shape[:2]) == largest]


def plan_image(
    *,
    provider: str,
    library: AssetLibrary,
    width: int,
    height: int,
    seed: int,
    image_format: ImageFormat,
    defect_rate: float,
    defect_mix: Mapping[Defect, float],
    rng: np.random.Generator,
    subject: str | None = None,
    identity_drift_rate: float = 0.0,
) -> Truth:
    """Draw every random choice of one generation. The draw order is fixed: it is the contract
    that makes outputs reproducible for a given (scenario seed, provider, request). Without a
    ``subject`` the draws are exactly those of a market that knows no subjects."""
    sources = library.eligible(width, height)
    if subject is None:
        source = sources[int(rng.integers(len(sources)))]
    else:
        source = _subject_source(library, sources, subject, identity_drift_rate, rng)
    # The rotation comes from a child generator: spawning one leaves ``rng``'s own stream where it
    # was, so every later draw (the defect, its strength) stays what it was for a given request.
    rotation = float(rng.spawn(1)[0].uniform(-_ROTATION_DEG, _ROTATION_DEG))
    variation = Variation(
        crop=float(rng.uniform(*_ZOOM)),
        shift_x=float(rng.uniform(-_SHIFT_X, _SHIFT_X)),
        shift_y=float(rng.uniform(-_SHIFT_Y, _SHIFT_Y)),
        flip=bool(rng.random() < 0.5),
        brightness=float(rng.uniform(0.94, 1.06)),
        contrast=float(rng.uniform(0.92, 1.08)),
        warmth=float(rng.uniform(-1.0, 1.0)),
        tint=(
            float(rng.uniform(-1, 1) * _TINT),
            float(rng.uniform(-1, 1) * _TINT),
            float(rng.uniform(-1, 1) * _TINT),
        ),
        rotation=rotation,
    )
    truth = Truth(
        provider=provider,
        source=source,
        width=width,
        height=height,
        seed=seed,
        image_format=image_format,
        variation=variation,
        subject=subject,
    )
    defective = rng.random() < defect_rate
    faces_fit = min(width, height) >= MIN_FACE_DEFECT_SIDE
    kinds = [
        k
        for k, w in defect_mix.items()
        if w > 0 and (faces_fit or k not in FACE_DEFECTS) and k not in PRODUCT_DEFECTS
    ]
    if not defective or not kinds:
        return truth
    weights = np.array([defect_mix[kind] for kind in kinds], dtype=np.float64)
    defect = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    return dataclasses.replace(truth, defect=defect, strength=float(rng.uniform(0.5, 1.0)))


def plan_product_image(
    *,
    provider: str,
    ask: ProductAsk,
    width: int,
    height: int,
    seed: int,
    image_format: ImageFormat,
    defect_rate: float,
    defect_mix: Mapping[Defect, float] | None,
    rng: np.random.Generator,
) -> Truth:
    """Draw every choice of one product shot (see ``market.products``): the scene, then whether it is
    defective and how, from ``defect_mix`` (face defects left out; ``DEFAULT_PRODUCT_MIX`` if none)."""
    scene = plan_scene(ask, rng)
    truth = Truth(
        provider=provider,
        source=f"product:{ask.shape}",
        width=width,
        height=height,
        seed=seed,
        image_format=image_format,
        variation=_NO_VARIATION,
        product=scene,
    )
    kinds = product_kinds(DEFAULT_PRODUCT_MIX if defect_mix is None else defect_mix)
    if not rng.random() < defect_rate or not kinds:
        return truth
    names = list(kinds)
    weights = np.array([kinds[kind] for kind in names], dtype=np.float64)
    defect = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    return dataclasses.replace(truth, defect=defect, strength=float(rng.uniform(0.5, 1.0)))


# A product shot is drawn, not framed from a photo: it has no variation of its own.
_NO_VARIATION = Variation(
    crop=1.0,
    shift_x=0.0,
    shift_y=0.0,
    flip=False,
    brightness=1.0,
    contrast=1.0,
    warmth=0.0,
    tint=(0.0, 0.0, 0.0),
)


def _subject_source(
    library: AssetLibrary, sources: list[str], subject: str, drift_rate: float, rng: np.random.Generator
) -> str:
    """One of the subject's photos, or (drifting) someone else's; eligible sizes preferred."""
    drift = bool(rng.random() < drift_rate)
    pool = [name for name in sources if (identity_of(name) == subject) != drift]
    if not pool:  # nothing of the right kind is large enough: take any size
        pool = [name for name in library.names if (identity_of(name) == subject) != drift] or sources
    return pool[int(rng.integers(len(pool)))]


def render(truth: Truth, library: AssetLibrary) -> bytes:
    """Encode the image a ``Truth`` describes (deterministic: same truth, same bytes)."""
    if truth.product is not None:
        drawn = truth.defect if truth.defect in PRODUCT_DEFECTS else None
        img = render_scene(
            truth.product, truth.width, truth.height, seed=truth.seed, defect=drawn, strength=truth.strength
        )
        if truth.defect is not None and drawn is None and truth.defect is not Defect.TRUNCATED:
            img = apply_pixel_defect(img, truth.defect, truth.strength)
    else:
        src = library.image(truth.source)
        img = vary(src, truth.variation, truth.width, truth.height, face=library.face_box(truth.source))
        if truth.defect is not None and truth.defect is not Defect.TRUNCATED:
            img = _defect(img, truth, library.face_models)
    data = encode(img, truth.image_format)
    if truth.defect is Defect.TRUNCATED:
        data = truncate(data, truth.strength)
    return data


# Face defects that take the face models: the library's shared ones, instead of a fresh set per call.
_WITH_MODELS: Mapping[Defect, Callable[..., Image]] = {
    Defect.EXTRA_FACE: face_defects.extra_face,
    Defect.FACE_CUT: face_defects.face_cut,
    Defect.HARSH_SHADOW: face_defects.harsh_shadow,
    Defect.SKIN_TONE_SHIFT: face_defects.skin_tone_shift,
    Defect.CLUTTERED_BACKGROUND: face_defects.cluttered_background,
    Defect.CLOSED_EYES: face_defects.closed_eyes,
    Defect.LOPSIDED_MOUTH: face_defects.lopsided_mouth,
}


def _defect(img: Image, truth: Truth, models: FaceModels) -> Image:
    defect = truth.defect
    if defect is None:
        return img
    if defect in _WITH_MODELS:
        # A writable, contiguous copy: mediapipe refuses the negative strides of a flipped view.
        return _WITH_MODELS[defect](np.ascontiguousarray(img), truth.strength, models=models)
    return apply_pixel_defect(img, defect, truth.strength)


def encode(img: Image, image_format: ImageFormat) -> bytes:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif image_format == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, _WEBP_QUALITY])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError(f"{image_format} encoding failed")
    return buf.tobytes()
