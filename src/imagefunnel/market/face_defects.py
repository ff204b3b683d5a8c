"""Labelled defects of the headshot kind, placed with the face models' landmarks.

Honest synthetic edits of real photos, each the image-level signature of a failure that generators
produce: a second face or face fragment, closed eyes, a face cut by the frame or lost in it, a harsh
shadow over half the face, a skin tone that is not the subject's, a busy background. Every function
takes an RGB ``uint8`` array and a strength in ``(0, 1]`` and returns a new array; a photo without a
detectable face raises ``ValueError`` (the market only renders human portraits).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.scoring.faces import (
    FACE_OVAL,
    LEFT_EYE,
    RIGHT_EYE,
    FaceAnalysis,
    FaceBox,
    FaceModels,
    Landmarks,
    polygon_mask,
)

__all__ = [
    "closed_eyes",
    "cluttered_background",
    "extra_face",
    "face_cut",
    "harsh_shadow",
    "lopsided_mouth",
    "skin_tone_shift",
    "small_face",
]

Image = NDArray[np.uint8]
FloatImage = NDArray[np.float32]


def _analyse(img: Image, models: FaceModels | None) -> tuple[FaceAnalysis, FaceBox, Landmarks]:
    # Without shared models, fresh ones: building the graphs takes milliseconds, and the market
    # renders few defects. Callers that edit many images (tests, benchmarks) pass their own.
    analysis = (models or FaceModels()).analyse(np.ascontiguousarray(img))
    box, marks = analysis.primary, analysis.landmarks
    if box is None or marks is None:
        raise ValueError("this defect needs a photo with a detectable face")
    return analysis, box, marks


def _feather(mask: NDArray[np.uint8], sigma: float) -> FloatImage:
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=max(0.5, sigma))
    return np.asarray(soft, dtype=np.float32)[..., None]


def _relight(img: Image, stops: float) -> FloatImage:
    """``img`` made ``stops`` brighter (negative: darker) in linear light, back in sRGB levels."""
    c = np.arange(256, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * 2.0**stops
    linear = np.clip(linear, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    table = (srgb * 255.0).astype(np.float32)  # one entry per 8-bit level: a lookup, not a pow
    return np.asarray(table[img], dtype=np.float32)


def _blend(img: Image, other: FloatImage, alpha: FloatImage) -> Image:
    out = img.astype(np.float32) * (1 - alpha) + other * alpha
    blended: Image = np.clip(out, 0, 255).astype(np.uint8)
    return blended


def extra_face(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Paste a smaller copy of the subject's face into the upper corner with the most room."""
    _, box, _ = _analyse(img, models)
    h, w = img.shape[:2]
    # The face box with forehead and chin room, clipped to the frame.
    x0, x1 = max(0, round(box.left - 0.1 * box.width)), min(w, round(box.right + 0.1 * box.width))
    y0, y1 = max(0, round(box.top - 0.25 * box.height)), min(h, round(box.bottom + 0.05 * box.height))
    scale = 0.45 + 0.25 * strength
    ch, cw = max(8, round((y1 - y0) * scale)), max(8, round((x1 - x0) * scale))
    copy = np.asarray(cv2.resize(img[y0:y1, x0:x1], (cw, ch), interpolation=cv2.INTER_AREA), np.uint8)
    # Into the upper corner on the side with more room; it may overlap the face where there is none.
    px = round(0.02 * w) if box.left >= w - box.right else max(0, w - cw - round(0.02 * w))
    py = max(0, round(box.top - 0.3 * box.height))
    vis_h, vis_w = min(ch, h - py), min(cw, w - px)
    pasted = img.astype(np.float32)
    pasted[py : py + vis_h, px : px + vis_w] = copy[:vis_h, :vis_w]
    region = np.zeros((h, w), dtype=np.uint8)
    cv2.ellipse(region, (px + cw // 2, py + ch // 2), (cw // 2, ch // 2), 0, 0, 360, (255,), -1)
    return _blend(img, pasted, _feather(region, 0.03 * cw))


def closed_eyes(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Close both eyes: fill each eye opening with the surrounding skin, draw the lids' lash line.

    The opening (the area inside the eyelid landmarks, grown until its edge lies on skin rather than
    on lashes) is inpainted from the skin around it, which is what a closed lid looks like at
    headshot scale; a lash line where the lids meet keeps it from reading as missing eyes.
    ``strength`` sets how dark the lash line is.
    """
    _, box, marks = _analyse(img, models)
    shape = (int(img.shape[0]), int(img.shape[1]))
    grow = max(3, round(0.05 * box.height)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    mask = np.zeros(shape, dtype=np.uint8)
    for eye in (RIGHT_EYE, LEFT_EYE):
        mask |= polygon_mask(shape, marks[list(eye)])
    out = np.asarray(cv2.inpaint(img, cv2.dilate(mask, kernel), grow, cv2.INPAINT_TELEA), dtype=np.uint8)
    lash = np.zeros(shape, dtype=np.uint8)
    # Closed lids meet a third of the way up from the lower lid, along its curve.
    for lower_lid, upper, lower in (((33, 7, 163, 144, 145, 153, 154, 155, 133), 159, 145),
                                    ((263, 249, 390, 373, 374, 380, 381, 382, 362), 386, 374)):  # fmt: skip
        curve = marks[list(lower_lid)] + 0.35 * (marks[upper] - marks[lower])
        points = np.round(curve).astype(np.int32)
        cv2.polylines(lash, [points], False, (255,), max(1, round(0.012 * box.height)))
    dark = out.astype(np.float32) * (0.5 - 0.25 * strength)
    return _blend(out, dark, _feather(lash, 0.004 * box.height))


def _face_region(analysis: FaceAnalysis, marks: Landmarks, grow: float) -> NDArray[np.uint8]:
    oval = polygon_mask((analysis.height, analysis.width), marks[list(FACE_OVAL)])
    k = max(3, round(float(np.ptp(marks[:, 1])) * grow)) | 1
    return np.asarray(cv2.dilate(oval, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))), np.uint8)


def harsh_shadow(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Darken one half of the face (split along the forehead–chin line) by 1.5 to 2.5 stops."""
    analysis, box, marks = _analyse(img, models)
    h, w = img.shape[:2]
    top, chin = marks[10], marks[152]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # Sign of the cross product: which side of the midline each pixel is on.
    side = (chin[0] - top[0]) * (ys - top[1]) - (chin[1] - top[1]) * (xs - top[0])
    half = ((side > 0) & (_face_region(analysis, marks, 0.15) > 0)).astype(np.uint8) * 255
    return _blend(img, _relight(img, -(1.5 + strength)), _feather(half, 0.02 * box.height))


def skin_tone_shift(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Render the face with another complexion: 1.6–2.0 stops darker and shifted in hue.

    Photos of one person under different light already differ by up to ~1.3 stops and ΔE ~20, so a
    complexion change that a reference comparison can see is larger than that.
    """
    analysis, box, marks = _analyse(img, models)
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    shifted = cv2.cvtColor(_relight(img, -(1.2 + 0.8 * strength)) / 255.0, cv2.COLOR_RGB2LAB)
    # Towards olive/grey: less red, more yellow, by 10 to 14 units of a*/b*.
    shifted[..., 1] = lab[..., 1] - (6.0 + 8.0 * strength)
    shifted[..., 2] = lab[..., 2] + (6.0 + 8.0 * strength)
    out = np.clip(cv2.cvtColor(shifted, cv2.COLOR_LAB2RGB) * 255.0, 0, 255)
    return _blend(img, out, _feather(_face_region(analysis, marks, 0.06), 0.03 * box.height))


def _warp_down(img: Image, centre: NDArray[np.float32], shift: float, sigma: float) -> Image:
    """Move the content around ``centre`` down by ``shift`` pixels (up if negative), smoothly."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1] - shift / 2) ** 2) / (2 * sigma**2))
    map_y = (ys - shift * weight).astype(np.float32)
    return np.asarray(cv2.remap(img, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.uint8)


def lopsided_mouth(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Pull one mouth corner up by 9–11 % of the face height: a one-sided sneer or a melted smile."""
    _, box, marks = _analyse(img, models)
    # A broad warp (σ = 14 % of the face) moves the cheek with the corner, as a real smile does.
    return _warp_down(img, marks[61], -(0.09 + 0.02 * strength) * box.height, 0.14 * box.height)


def face_cut(img: Image, strength: float = 1.0, *, models: FaceModels | None = None) -> Image:
    """Re-frame so that the frame's edge cuts through the face (a 20 %–35 % slice of it is lost)."""
    _, box, _ = _analyse(img, models)
    h, w = img.shape[:2]
    lost = (0.2 + 0.15 * strength) * box.width
    # A tighter window (at most 70 % of the image, same aspect) whose edge falls inside the face on
    # the side nearer to the frame, enlarged back to full size: a crop gone wrong.
    if box.left + box.width / 2 < w / 2:
        x0 = round(box.left + lost)
        side = min(round(0.7 * w), w - x0)
    else:
        right = round(box.right - lost)
        side = min(round(0.7 * w), right)
        x0 = right - side
    rows = round(side * h / w)
    y0 = max(0, min(h - rows, round(box.top - 0.15 * box.height)))
    window = img[y0 : y0 + rows, x0 : x0 + side]
    return np.asarray(cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def small_face(img: Image, strength: float = 1.0) -> Image:
    """Shrink the whole picture onto a plain backdrop: the face becomes a small part of the frame."""
    h, w = img.shape[:2]
    scale = 0.4 - 0.15 * strength
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    out = np.empty_like(img)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    y0, x0 = (h - sh) // 2 + round(0.2 * h * scale), (w - sw) // 2
    out[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    return out


def cluttered_background(
    img: Image, strength: float = 1.0, *, seed: int = 0, models: FaceModels | None = None
) -> Image:
    """Fill the background (outside the person mask) with small high-contrast shapes and lines."""
    analysis, box, _ = _analyse(img, models)
    h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    clutter = cv2.GaussianBlur(img, (0, 0), sigmaX=2.0).astype(np.float32)
    # Sizes in pixels, count per pixel area: the same clutter density at any resolution.
    count = round((900 + 900 * strength) * h * w / 512**2)
    for _ in range(count):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        size = int(rng.integers(2, 16))
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(clutter, (x, y), (x + size, y + size), colour, -1)
        else:
            end = (x + int(rng.integers(-4, 5)) * size, y + int(rng.integers(-4, 5)) * size)
            cv2.line(clutter, (x, y), end, colour, 1 + size // 6)
    grow = max(3, round(0.04 * box.height)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    person = np.asarray(cv2.dilate((analysis.person_mask > 0.5).astype(np.uint8) * 255, kernel), np.uint8)
    return _blend(img, clutter, 1.0 - _feather(person, 0.01 * box.height))
