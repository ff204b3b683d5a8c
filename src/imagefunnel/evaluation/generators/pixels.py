"""Whole-image defects, each family made in at least two different ways.

Sizes are given at a 512 px long side and scaled to the image, so that a defect of one strength is
equally visible on a small and on a large photo. Strength 0.5 is the weakest *hard* defect: one that
no customer would accept.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from imagefunnel.evaluation.generators.base import Generator, Rgb, from_linear, to_linear

__all__ = ["PIXEL_GENERATORS"]


def _scale(rgb: Rgb) -> float:
    return max(rgb.shape[:2]) / 512.0


def _unit_chroma(rng: np.random.Generator) -> NDArray[np.float64]:
    """A random direction in the plane of colours with no luminance change (log-gain space)."""
    angle = rng.uniform(0.0, 2 * math.pi)
    # Two orthonormal zero-sum vectors span the chroma plane of (R, G, B) log gains.
    u = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    v = np.array([1.0, 1.0, -2.0]) / math.sqrt(6)
    return np.asarray(math.cos(angle) * u + math.sin(angle) * v)


def cast_white_balance(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The usual real cast: the camera's white balance is wrong, i.e. per-channel gains in linear
    # light. 0.7 stops between channels at 0.5 (an uncorrected warm room), 1.2 stops at 1.
    spread = 0.2 + 1.0 * strength
    gains = 2.0 ** (spread * _unit_chroma(rng) * math.sqrt(2))
    linear = to_linear(rgb) * gains.astype(np.float32)
    luma = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    linear *= float((to_linear(rgb) @ luma).mean() / max(float((linear @ luma).mean()), 1e-6))
    return from_linear(linear)


def cast_additive_tint(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A tint laid over the picture in sRGB levels (a filter, a badly mixed overlay): 12 + 36 levels.
    offset = (12.0 + 36.0 * strength) * _unit_chroma(rng) * math.sqrt(2)
    return np.clip(rgb.astype(np.float32) + offset.astype(np.float32), 0, 255).astype(np.uint8)


def blur_gaussian(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    sigma = (0.8 + 2.4 * strength) * _scale(rgb)
    return np.asarray(cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma), dtype=np.uint8)


def blur_motion(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A straight shake: a line kernel at one of several angles, 4-13 px long at 512 px.
    length = max(3, round((3.0 + 10.0 * strength) * _scale(rgb)))
    angle = float(rng.choice([0.0, 20.0, 45.0, 70.0, 90.0, 115.0, 135.0, 160.0]))
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, turn, (length, length), flags=cv2.INTER_LINEAR), np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.asarray(cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REFLECT), dtype=np.uint8)


def blur_defocus(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # An out-of-focus lens: a uniform disk (the aperture's image), radius 1.5-5 px at 512 px, in
    # linear light, where a lens does its averaging.
    radius = (1.2 + 3.6 * strength) * _scale(rgb)
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (xx * xx + yy * yy <= radius * radius).astype(np.float32)
    disk /= disk.sum()
    return from_linear(cv2.filter2D(to_linear(rgb), -1, disk, borderType=cv2.BORDER_REFLECT))


def _pre_resize(rgb: Rgb, rng: np.random.Generator) -> Rgb:
    # Pixelation on images of several sizes: shrink first (never enlarge a clean photo).
    factor = float(rng.choice([1.0, 0.85, 0.7]))
    if factor == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(32, round(w * factor)), max(32, round(h * factor)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _cell(rgb: Rgb, strength: float, rng: np.random.Generator) -> int:
    base = (3.0 + 9.0 * strength) * _scale(rgb)  # 3-12 px cells at 512 px
    return max(3, round(base * float(rng.uniform(0.85, 1.15))))


def pixelate_mosaic(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Cells filled with their mean colour, the grid offset by a random phase: aligned with the
    # 8-px JPEG grid only by chance (a phase of 0 with a cell of 8).
    rgb = _pre_resize(rgb, rng)
    cell = _cell(rgb, strength, rng)
    aligned = bool(rng.random() < 0.3)
    oy, ox = (0, 0) if aligned else (int(rng.integers(0, cell)), int(rng.integers(0, cell)))
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((oy, cell), (ox, cell), (0, 0)), mode="edge").astype(np.float32)
    ny, nx = (h + oy) // cell + 1, (w + ox) // cell + 1
    cells = padded[: ny * cell, : nx * cell].reshape(ny, cell, nx, cell, 3).mean(axis=(1, 3))
    big = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)
    return np.clip(big[oy : oy + h, ox : ox + w] + 0.5, 0, 255).astype(np.uint8)


def pixelate_nearest(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Downscale by point sampling, then enlarge with nearest-neighbour (PIL): a low-resolution
    # output blown up, cells not a whole number of pixels.
    rgb = _pre_resize(rgb, rng)
    h, w = rgb.shape[:2]
    factor = _cell(rgb, strength, rng) + float(rng.uniform(0.0, 0.9))
    small = Image.fromarray(rgb).resize(
        (max(4, round(w / factor)), max(4, round(h / factor))), Image.Resampling.NEAREST
    )
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


def overexpose_linear(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Too much light at the sensor: 1.5 + 2 stops in linear light, everything above white clipped.
    return from_linear(to_linear(rgb) * 2.0 ** (1.0 + 2.0 * strength))


def underexpose_linear(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Too little light: 2-4 stops less in linear light, with the sensor's noise floor showing.
    dark = to_linear(rgb) * 2.0 ** -(1.0 + 3.0 * strength)
    noise = rng.normal(0.0, 0.0008, dark.shape).astype(np.float32)
    return from_linear(np.maximum(dark + noise, 0.0))


def overexpose_levels(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # An over-pushed "levels" edit in sRGB: the white point pulled down to 45-25 % of the range.
    white = 255.0 * (0.62 - 0.34 * strength)
    return np.clip(rgb.astype(np.float32) * (255.0 / white), 0, 255).astype(np.uint8)


def underexpose_gamma(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A crushed tone curve in sRGB: gamma 2-3.5 and the white point lowered.
    gamma = 1.6 + 2.4 * strength
    out = 255.0 * (rgb.astype(np.float32) / 255.0) ** gamma * (0.8 - 0.3 * strength)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def noise_gaussian(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Independent noise per channel in sRGB levels, sigma 7-20.
    sigma = 3.0 + 17.0 * strength
    noisy = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def noise_shot(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Photon shot noise in linear light (Poisson): a high-ISO photo. Fewer photons, more noise.
    photons = 2000.0 / (1.0 + 30.0 * strength)
    linear = to_linear(rgb)
    return from_linear(rng.poisson(linear * photons).astype(np.float32) / photons)


def jpeg_pil(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Pillow's encoder, 4:2:0 chroma, quality 28 down to 4.
    quality = max(2, round(28 - 24 * strength))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)


def jpeg_generations(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Saved again and again (three generations with OpenCV's encoder), the last one the worst.
    out = rgb
    final = max(3, round(30 - 24 * strength))
    for quality in (final + 20, final + 10, final):
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), dtype=np.uint8)
    return out


def blank_flat(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A frame of one colour, the image's mean, with a faint gradient (a failed render).
    mean = rgb.reshape(-1, 3).mean(axis=0)
    ramp = np.linspace(-2.0, 2.0, rgb.shape[1], dtype=np.float32)[None, :, None]
    return np.asarray(
        np.clip(mean[None, None, :] + ramp + np.zeros_like(rgb, np.float32), 0, 255), dtype=np.uint8
    )


def black_frame(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Almost black, with a trace of sensor noise.
    return rng.integers(0, 4, rgb.shape, dtype=np.uint8)


def _g(name: str, family: str, expect: tuple[str, ...], how: str, make: object) -> Generator:
    return Generator(name=name, family=family, expect=expect, how=how, make=make)  # type: ignore[arg-type]


# The dimensions meant to reject each family: the generic one, and the headshot tier's measure of
# the same fault on the face or against the subject's reference photos.
_BLUR = ("sharpness", "face_sharpness")
_CAST = ("color_cast", "color_shift")
_OVER = ("highlight_clipping", "face_exposure", "face_clipping", "skin_tone_stops")
_UNDER = ("brightness", "face_exposure", "skin_tone_stops")
PIXEL_GENERATORS: tuple[Generator, ...] = (
    _g("cast_wb_gain", "color_cast", _CAST, "white-balance gains in linear light", cast_white_balance),
    _g("cast_tint", "color_cast", _CAST, "additive tint in sRGB levels", cast_additive_tint),
    _g("blur_gaussian", "blur", _BLUR, "gaussian blur", blur_gaussian),
    _g("blur_motion", "blur", _BLUR, "line kernel at one of 8 angles", blur_motion),
    _g("blur_defocus", "blur", _BLUR, "uniform disk in linear light", blur_defocus),
    _g("pixel_mosaic", "pixelation", ("pixelation",), "mean-colour cells, random grid phase", pixelate_mosaic),
    _g("pixel_nearest", "pixelation", ("pixelation",), "point-sampled, enlarged nearest", pixelate_nearest),
    _g("over_linear", "overexposure", _OVER, "linear gain, clipped", overexpose_linear),
    _g("over_levels", "overexposure", _OVER, "sRGB white point lowered", overexpose_levels),
    _g("under_linear", "underexposure", _UNDER, "linear gain down, noise floor", underexpose_linear),
    _g("under_gamma", "underexposure", _UNDER, "crushed sRGB tone curve", underexpose_gamma),
    _g("noise_gaussian", "noise", ("noise",), "gaussian noise per channel in sRGB", noise_gaussian),
    _g("noise_shot", "noise", ("noise",), "Poisson shot noise in linear light", noise_shot),
    _g("jpeg_pil", "jpeg", ("blockiness",), "one Pillow encode at low quality", jpeg_pil),
    _g("jpeg_generations", "jpeg", ("blockiness",), "three OpenCV re-encodes", jpeg_generations),
    _g("blank_flat", "blank", ("uniformity",), "one colour with a faint ramp", blank_flat),
    _g("black_noise", "blank", ("uniformity", "brightness"), "near-black noise", black_frame),
)  # fmt: skip
