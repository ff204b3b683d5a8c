"""The market's "image model": realistic variations of real portraits, some with labelled defects.

Generation is split in two so the truth is known the moment a request is accepted:

* ``plan_image`` draws every random choice (source photo, variation, defect and its strength) and
  returns a frozen ``Truth`` — the complete recipe, and the label the scorers are graded against;
* ``render`` turns a ``Truth`` into encoded bytes. It is a pure function, so the server can render
  lazily, evict rendered bytes, and render again later with identical output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.market.defects import Defect, Image, apply_pixel_defect, truncate

__all__ = ["AssetLibrary", "ImageFormat", "Truth", "Variation", "encode", "plan_image", "render"]

ImageFormat = Literal["png", "jpeg", "webp"]

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
_WARMTH = 0.07  # at most ±7 % more red and less blue (or the reverse)
_TINT = 14.0  # background tint, in RGB levels, faded in towards the corners only
# Resampling softens; a generator renders at the output size and does not. An unsharp mask gives back
# the detail a sub-pixel warp (base) and an upscale (per unit of magnification above 1) took away.
_SHARPEN_BASE = 0.3
_SHARPEN_PER_ZOOM = 1.5
_SHARPEN_SIGMA = 1.0


@dataclass(frozen=True, slots=True)
class Variation:
    """Mild, realistic differences between two generations of the same subject."""

    crop: float  # side of the window relative to the largest that fits at this rotation (0.8..1)
    shift_x: float  # window offset as a fraction of the free half-margin (-0.55..0.55)
    shift_y: float  # (-0.4..0.4): keeps the face in
    flip: bool
    brightness: float  # multiplicative gain, 0.94..1.06
    contrast: float  # around the mean, 0.92..1.08
    warmth: float  # -1..1: warmer (more red, less blue) or cooler, at most ±7 %
    tint: tuple[float, float, float]  # RGB offset (±14 levels) applied towards the edges only
    rotation: float = 0.0  # degrees, counter-clockwise (-4..4)


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

    @property
    def clean(self) -> bool:
        return self.defect is None


class AssetLibrary:
    """The real portrait photos, decoded once (RGB ``uint8``); read-only after construction."""

    def __init__(self) -> None:
        folder = resources.files("imagefunnel.market") / "assets" / "portraits"
        images: dict[str, Image] = {}
        for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if not item.name.endswith(".jpg") or item.name in _NOT_FACES:
                continue
            buf = np.frombuffer(item.read_bytes(), dtype=np.uint8)
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if bgr is None:  # pragma: no cover - the shipped assets are valid JPEGs
                raise ValueError(f"cannot decode portrait asset {item.name}")
            images[item.name] = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        self._images: Mapping[str, Image] = images

    @property
    def names(self) -> list[str]:
        return list(self._images)

    def image(self, name: str) -> Image:
        return self._images[name]

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
) -> Truth:
    """Draw every random choice of one generation. The draw order is fixed: it is the contract
    that makes outputs reproducible for a given (scenario seed, provider, request)."""
    sources = library.eligible(width, height)
    source = sources[int(rng.integers(len(sources)))]
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
    )
    defective = rng.random() < defect_rate
    kinds = [kind for kind, weight in defect_mix.items() if weight > 0]
    if not defective or not kinds:
        return truth
    weights = np.array([defect_mix[kind] for kind in kinds], dtype=np.float64)
    defect = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    return dataclasses.replace(truth, defect=defect, strength=float(rng.uniform(0.5, 1.0)))


def render(truth: Truth, library: AssetLibrary) -> bytes:
    """Encode the image a ``Truth`` describes (deterministic: same truth, same bytes)."""
    img = _vary(library.image(truth.source), truth.variation, truth.width, truth.height)
    if truth.defect is not None and truth.defect is not Defect.TRUNCATED:
        img = apply_pixel_defect(img, truth.defect, truth.strength)
    data = encode(img, truth.image_format)
    if truth.defect is Defect.TRUNCATED:
        data = truncate(data, truth.strength)
    return data


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


def _vary(src: Image, v: Variation, width: int, height: int) -> Image:
    img = _frame(src, v, width, height)
    if v.flip:
        img = img[:, ::-1]
    pixels = img.astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    pixels = (pixels - mean) * v.contrast + mean
    pixels *= v.brightness
    pixels *= np.array([1 + _WARMTH * v.warmth, 1.0, 1 - _WARMTH * v.warmth], dtype=np.float32)
    pixels += _edge_mask(height, width)[..., None] * np.array(v.tint, dtype=np.float32)
    out: Image = np.clip(pixels, 0, 255).astype(np.uint8)
    return out


def _frame(src: Image, v: Variation, width: int, height: int) -> Image:
    """Zoom, offset and rotate a window of the output's aspect out of ``src``, in one resampling."""
    side_h, side_w = src.shape[:2]
    aspect = width / height
    theta = math.radians(v.rotation)
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    # The largest window whose rotated bounding box still fits the source, shrunk by the zoom.
    window_w = min(side_w / (cos + sin / aspect), side_h / (sin + cos / aspect)) * v.crop
    window_h = window_w / aspect
    box_w, box_h = window_w * cos + window_h * sin, window_w * sin + window_h * cos
    cx = side_w / 2 + (side_w - box_w) / 2 * v.shift_x
    cy = side_h / 2 + (side_h - box_h) / 2 * v.shift_y
    scale = width / window_w
    amount = _SHARPEN_BASE + _SHARPEN_PER_ZOOM * max(0.0, scale - 1.0)
    if scale < 1.0:
        # Shrinking: area-average first, so the affine warp below does not alias.
        src = np.asarray(
            cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
        cx, cy, scale = cx * scale, cy * scale, 1.0
    matrix = np.asarray(cv2.getRotationMatrix2D((cx, cy), v.rotation, scale), dtype=np.float64)
    matrix[:, 2] += (width / 2 - cx, height / 2 - cy)
    warped = cv2.warpAffine(
        src, matrix, (width, height), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT_101
    )
    pixels = np.asarray(warped, dtype=np.float32)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), _SHARPEN_SIGMA)
    return np.clip(pixels + amount * detail, 0, 255).astype(np.uint8)


def _edge_mask(height: int, width: int) -> NDArray[np.float32]:
    # 0 over the central face region, rising smoothly to 1 in the corners: a background tint that
    # leaves skin tones alone (skin tone vs reference is a scored dimension).
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    radius = np.sqrt(xs**2 + ys**2) / np.sqrt(2.0)
    t = np.clip((radius - 0.55) / 0.45, 0.0, 1.0)
    mask: NDArray[np.float32] = t * t * (3 - 2 * t)
    return mask
