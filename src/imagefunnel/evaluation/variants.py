"""Clean variations of a real photo: what a good image may look like after ordinary handling.

None of these is a defect, and none may be rejected. Besides the handling a delivery pipeline does
(crop, exposure, resize, JPEG re-encode), they imitate ordinary snapshots rather than press
portraits: slightly soft focus, light from one side, an already heavily compressed copy. Every
variation draws its parameters from the given generator, so a seed reproduces the set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.evaluation.generators.base import from_linear, haar_face, to_linear

__all__ = ["CLEAN_VARIANTS", "Rgb", "Variant", "decode_jpeg", "encode_jpeg"]

Rgb = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Variant:
    """A clean image and, when its encoding is part of the variation, the encoded bytes to keep."""

    rgb: Rgb
    params: str  # the drawn parameters, for the labels: "gain=1.14"
    jpeg: bytes | None = None


def encode_jpeg(rgb: Rgb, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> Rgb:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


# A clean delivery is never tiny: resized copies keep at least this long side (or the source's own,
# when it is smaller), so that "clean" never means a thumbnail blown up for viewing.
MIN_SIDE = 256


def _resize(rgb: Rgb, factor: float) -> Rgb:
    h, w = rgb.shape[:2]
    factor = min(1.0, max(factor, MIN_SIDE / max(h, w)))
    if factor == 1.0:
        return rgb
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def as_is(rgb: Rgb, rng: np.random.Generator) -> Variant:
    return Variant(rgb, "")


def crop(rgb: Rgb, rng: np.random.Generator) -> Variant:
    haar_face(rgb)  # a photo whose face is not found whole (a close-up) has nothing left to crop
    h, w = rgb.shape[:2]
    side = float(rng.uniform(0.72, 0.9))
    ch, cw = round(h * side), round(w * side)
    # Off-centre by at most a quarter of the margin: a headshot crop keeps the face in.
    top = round((h - ch) / 2 * (1 + rng.uniform(-0.25, 0.25)))
    left = round((w - cw) / 2 * (1 + rng.uniform(-0.25, 0.25)))
    return Variant(np.ascontiguousarray(rgb[top : top + ch, left : left + cw]), f"side={side:.2f}")


def _clip_headroom(rgb: NDArray[np.uint8] | NDArray[np.float32]) -> float:
    """The largest gain that leaves the brightest 2 % of the central half (the face) unclipped."""
    h, w = rgb.shape[:2]
    centre = rgb[h // 4 : h - h // 4, w // 4 : w - w // 4].max(axis=2)
    return 250.0 / max(float(np.percentile(centre, 98)), 1.0)


def exposure(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # Brighter or darker by 10-20 %, never so bright that the face burns out (that is a defect).
    gain = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.2) + 1.0)
    gain = min(gain, max(1.0, _clip_headroom(rgb)))
    out = np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return Variant(out, f"gain={gain:.2f}")


def resize(rgb: Rgb, rng: np.random.Generator) -> Variant:
    factor = float(rng.uniform(0.55, 0.8))
    return Variant(_resize(rgb, factor), f"scale={factor:.2f}")


def jpeg(rgb: Rgb, rng: np.random.Generator) -> Variant:
    quality = int(rng.integers(70, 86))
    data = encode_jpeg(rgb, quality)
    return Variant(decode_jpeg(data), f"q={quality}", data)


def soft(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A snapshot slightly out of focus: sigma 0.5-0.9 px at 512 px, a quarter of the mildest blur defect.
    sigma = float(rng.uniform(0.5, 0.9)) * max(rgb.shape[:2]) / 512
    out = np.asarray(cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma), dtype=np.uint8)
    return Variant(out, f"sigma={sigma:.2f}")


def side_lit(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # Light from one side: the far side loses 0.7-1.3 stops, smoothly, in linear light.
    stops = float(rng.uniform(0.7, 1.3))
    ramp = np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32)
    ramp = ramp * ramp * (3 - 2 * ramp)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    gain = (2.0 ** (-stops * ramp))[None, :, None]
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * gain
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return Variant(np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8), f"stops={stops:.2f}")


def compressed(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A copy that went through a messenger or a social network: smaller and JPEG quality 45-60.
    factor = float(rng.uniform(0.6, 0.8))
    quality = int(rng.integers(45, 61))
    data = encode_jpeg(_resize(rgb, factor), quality)
    return Variant(decode_jpeg(data), f"scale={factor:.2f} q={quality}", data)


def tight_crop(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A headshot cropped close: hair, ears and the top of the forehead cut, the face itself whole.
    face = haar_face(rgb)
    h, w = rgb.shape[:2]
    grow = float(rng.uniform(1.3, 1.5))
    side = min(h, w, round(face.w * grow))
    if side < 160:
        raise ValueError("the face is too small for a tight crop that is still a usable image")
    cx, cy = face.cx + face.w * float(rng.uniform(-0.05, 0.05)), face.cy + 0.08 * face.h
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return Variant(np.ascontiguousarray(rgb[y0 : y0 + side, x0 : x0 + side]), f"grow={grow:.2f}")


def _side_light(rgb: Rgb, stops: float, rng: np.random.Generator) -> Rgb:
    ramp = np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32)
    ramp = ramp * ramp * (3 - 2 * ramp)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    return from_linear(to_linear(rgb) * (2.0 ** (-stops * ramp))[None, :, None])


def side_lit_strong(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # Portrait lighting with a high ratio: the far edge of the frame 1.5-3 stops darker, smoothly.
    stops = float(rng.uniform(1.5, 3.0))
    return Variant(_side_light(rgb, stops, rng), f"stops={stops:.2f}")


def dark_room(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A dim room: 1-1.7 stops less light in linear light, with a little sensor noise.
    stops = float(rng.uniform(1.0, 1.7))
    linear = to_linear(rgb) * 2.0**-stops
    linear += rng.normal(0.0, 0.0015, linear.shape).astype(np.float32)
    return Variant(from_linear(np.maximum(linear, 0.0)), f"stops=-{stops:.2f}")


def bright_room(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A bright room: fill light lifts the shadows and mid-tones (linear y = x(1+a)/(1+ax), a 0.5-1.2,
    # up to one stop in the darks), while white stays white: nothing new clips, the face included.
    lift = float(rng.uniform(0.5, 1.2))
    linear = to_linear(rgb)
    return Variant(from_linear(linear * (1 + lift) / (1 + lift * linear)), f"fill={lift:.2f}")


def _plain_backdrop(rgb: Rgb) -> NDArray[np.float32]:
    """Where the photo shows a plain backdrop: smooth (low local spread over ~3 % of the frame),
    and away from the Haar face and the body under it. A wall, not a person."""
    face = haar_face(rgb)
    h, w = rgb.shape[:2]
    grey = rgb.astype(np.float32).mean(axis=2)
    k = max(5, round(0.03 * max(h, w))) | 1
    mean = cv2.blur(grey, (k, k))
    spread = np.sqrt(np.maximum(cv2.blur(grey * grey, (k, k)) - mean * mean, 0.0))
    plain = (spread < 6.0).astype(np.float32)
    person = np.zeros((h, w), np.float32)
    cv2.ellipse(
        person,
        (round(face.cx), round(face.cy)),
        (round(face.w * 0.9), round(face.h * 1.1)),
        0,
        0,
        360,
        (1.0,),
        -1,
    )
    person[round(face.y + face.h) :, max(0, round(face.x - 0.7 * face.w)) : round(face.x + 1.7 * face.w)] = (
        1.0
    )
    plain *= 1.0 - person
    plain = cv2.erode(plain, np.ones((k, k), np.uint8))
    return np.asarray(cv2.GaussianBlur(plain, (0, 0), k / 2), np.float32)[..., None]


def patterned_backdrop(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A plain backdrop turned into a patterned wall (stripes or checks, +-5-12 % in brightness):
    # wallpaper, panelling, a tiled wall. Only smooth backdrop away from the person changes.
    h, w = rgb.shape[:2]
    period = float(rng.uniform(0.025, 0.07)) * max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = np.radians(float(rng.choice([0.0, 90.0, 45.0])))
    kind = str(rng.choice(["stripes", "checks"]))
    if kind == "stripes":
        wave = np.sign(np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period))
    else:
        wave = np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    contrast = float(rng.uniform(0.05, 0.12))
    wall = _plain_backdrop(rgb)
    if float(wall.mean()) < 0.015:  # under 1.5 % of the frame: no wall worth the name
        raise ValueError("the photo has no plain backdrop to put a pattern on")
    out = rgb * (1.0 + contrast * wave[..., None] * wall)
    return Variant(np.clip(out, 0, 255).astype(np.uint8), f"{kind} period={period:.0f} c={contrast:.2f}")


def phone_jpeg(rgb: Rgb, rng: np.random.Generator) -> Variant:
    # A phone camera's look: sharpened, more saturated, a touch of noise, JPEG 80-90 with 4:2:0.
    amount = float(rng.uniform(0.3, 0.7))
    soft = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 1.2)
    sharp = rgb + amount * (rgb.astype(np.float32) - soft)
    grey = sharp.mean(axis=2, keepdims=True)
    vivid = grey + (sharp - grey) * float(rng.uniform(1.1, 1.25))
    vivid += rng.normal(0.0, 1.5, vivid.shape).astype(np.float32)
    vivid *= min(1.0, _clip_headroom(vivid))  # the phone's tone curve keeps the face from burning out
    quality = int(rng.integers(80, 91))
    data = encode_jpeg(np.clip(vivid, 0, 255).astype(np.uint8), quality)
    return Variant(decode_jpeg(data), f"sharpen={amount:.2f} q={quality}", data)


CLEAN_VARIANTS: dict[str, Callable[[Rgb, np.random.Generator], Variant]] = {
    "as_is": as_is,
    "crop": crop,
    "exposure": exposure,
    "resize": resize,
    "jpeg": jpeg,
    "soft": soft,
    "side_lit": side_lit,
    "compressed": compressed,
    "tight_crop": tight_crop,
    "side_lit_strong": side_lit_strong,
    "dark_room": dark_room,
    "bright_room": bright_room,
    "patterned_backdrop": patterned_backdrop,
    "phone_jpeg": phone_jpeg,
}
