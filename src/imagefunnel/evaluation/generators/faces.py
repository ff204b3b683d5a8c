"""Face defects placed with OpenCV's Haar cascades, each family made in two different ways.

The scorer finds faces with mediapipe's detector and mesh; these edits locate the face and eyes
with Haar cascades and place everything by the face box's proportions, so that a defect never
follows the scorer's own landmarks (a shadow is not split along its forehead-chin line, a closed
eye is not painted inside its eye polygon).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.evaluation.generators.base import (
    Box,
    Generator,
    Rgb,
    from_linear,
    haar_eyes,
    haar_face,
    mouth_of,
    to_linear,
)
from imagefunnel.evaluation.generators.duplicates import duplicated_eye, duplicated_mouth

__all__ = ["FACE_GENERATORS"]

Floats = NDArray[np.float32]


def _feather(mask: Floats, sigma: float) -> Floats:
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=max(0.5, sigma))
    return np.asarray(soft, dtype=np.float32)[..., None]


def _face_ellipse(shape: tuple[int, ...], face: Box, grow: float = 1.0) -> Floats:
    mask = np.zeros(shape[:2], dtype=np.float32)
    axes = (round(face.w * 0.5 * grow), round(face.h * 0.62 * grow))
    cv2.ellipse(mask, (round(face.cx), round(face.cy + 0.05 * face.h)), axes, 0, 0, 360, (1.0,), -1)
    return mask


def _shadow(rgb: Rgb, strength: float, rng: np.random.Generator, *, edge: float) -> Rgb:
    # A shadow whose edge crosses the face at 25-65 degrees from vertical, on a random side and at a
    # random offset: never the face's own midline. 2.5 stops darker at 0.5, 4 stops at 1.
    face = haar_face(rgb)
    h, w = rgb.shape[:2]
    angle = math.radians(float(rng.uniform(25, 65)) * float(rng.choice([-1.0, 1.0])))
    offset = float(rng.uniform(-0.2, 0.2)) * face.w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    distance = (xx - face.cx - offset) * math.cos(angle) + (yy - face.cy) * math.sin(angle)
    if rng.random() < 0.5:
        distance = -distance
    width = max(0.5, edge * face.w)
    shade = 1.0 / (1.0 + np.exp(np.clip(-distance / (width / 4.0), -60.0, 60.0)))  # 0 lit .. 1 in shadow
    stops = 1.0 + 3.0 * strength
    gain = 2.0 ** (-stops * shade)
    return from_linear(to_linear(rgb) * gain[..., None])


def shadow_hard(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    return _shadow(rgb, strength, rng, edge=0.02)


def shadow_soft(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    return _shadow(rgb, strength, rng, edge=0.25)


def _skin_sample(rgb: Rgb, face: Box) -> Floats:
    # Cheek colour: the median of a patch under each eye, well inside the face box.
    y0, y1 = face.y + face.h * 11 // 20, face.y + face.h * 13 // 20
    x0, x1 = face.x + face.w // 4, face.x + face.w * 3 // 4
    return np.asarray(np.median(rgb[y0:y1, x0:x1].reshape(-1, 3), axis=0), dtype=np.float32)


def closed_eyes_paint(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Skin painted over each Haar eye box, with a dark lash line across its middle.
    face = haar_face(rgb)
    eyes = haar_eyes(rgb, face)
    out = rgb.astype(np.float32)
    skin = _skin_sample(rgb, face)
    for eye in eyes:
        mask = np.zeros(rgb.shape[:2], dtype=np.float32)
        axes = (round(eye.w * 0.42), round(eye.h * (0.22 + 0.12 * strength)))
        centre = (round(eye.cx), round(eye.cy + 0.05 * eye.h))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, (1.0,), -1)
        soft = _feather(mask, eye.w * 0.05)
        out = out * (1 - soft) + skin * soft
        lash = np.zeros(rgb.shape[:2], dtype=np.float32)
        cv2.ellipse(lash, centre, (axes[0], max(1, axes[1] // 3)), 0, 10, 170, (1.0,), max(1, eye.w // 25))
        out = out * (1 - 0.6 * _feather(lash, 0.8)) + skin * 0.3 * 0.6 * _feather(lash, 0.8)
    return np.clip(out, 0, 255).astype(np.uint8)


def closed_eyes_squash(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Each eye region squashed vertically to a slit (remapped rows), the gap inpainted from around.
    face = haar_face(rgb)
    out = rgb.copy()
    for eye in haar_eyes(rgb, face):
        x0, x1 = max(0, eye.x), min(rgb.shape[1], eye.x + eye.w)
        y0, y1 = max(0, eye.y + eye.h // 5), min(rgb.shape[0], eye.y + eye.h * 4 // 5)
        band = out[y0:y1, x0:x1]
        keep = max(1, round((y1 - y0) * (0.18 - 0.1 * strength)))
        slit = cv2.resize(band, (x1 - x0, keep), interpolation=cv2.INTER_AREA)
        hole = np.zeros(rgb.shape[:2], dtype=np.uint8)
        hole[y0:y1, x0:x1] = 255
        mid = (y0 + y1) // 2
        hole[mid - keep // 2 : mid - keep // 2 + keep, x0:x1] = 0
        out[mid - keep // 2 : mid - keep // 2 + keep, x0:x1] = slit
        out = np.asarray(cv2.inpaint(out, hole, 3, cv2.INPAINT_TELEA), dtype=np.uint8)
    return out


def face_cut_crop(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The frame cuts the face on one side (left, right or below the mouth): 20-45 % of it lost.
    face = haar_face(rgb)
    lost = 0.15 + 0.3 * strength
    side = str(rng.choice(["left", "right", "bottom"]))
    if side == "left":
        return np.ascontiguousarray(rgb[:, round(face.x + lost * face.w) :])
    if side == "right":
        return np.ascontiguousarray(rgb[:, : round(face.x + (1 - lost) * face.w)])
    return np.ascontiguousarray(rgb[: round(face.y + (1.05 - lost) * face.h)])


def face_cut_zoom(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Zoomed in off-centre until the frame runs through the face, then back to the full size.
    face = haar_face(rgb)
    h, w = rgb.shape[:2]
    side = round(face.w * (1.1 - 0.35 * strength))
    sign = float(rng.choice([-1.0, 1.0]))
    cx = face.cx + sign * face.w * (0.25 + 0.15 * strength)
    x0 = int(np.clip(cx - side / 2, 0, max(0, w - side)))
    y0 = int(np.clip(face.cy - side / 2, 0, max(0, h - side)))
    window = rgb[y0 : y0 + side, x0 : x0 + side]
    return np.asarray(cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def _shrunk(rgb: Rgb, strength: float) -> tuple[Rgb, int, int]:
    h, w = rgb.shape[:2]
    factor = 0.5 - 0.3 * strength  # the face at 35 % of its size at 0.5, 20 % at 1
    small = cv2.resize(
        rgb, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    return np.asarray(small, dtype=np.uint8), (h - small.shape[0]) // 2, (w - small.shape[1]) // 2


def small_face_reflect(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Zoomed out, the rest of the frame filled by mirroring the picture outwards.
    small, top, left = _shrunk(rgb, strength)
    h, w = rgb.shape[:2]
    bottom, right = h - small.shape[0] - top, w - small.shape[1] - left
    padded = cv2.copyMakeBorder(small, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    return np.asarray(padded, dtype=np.uint8)


def small_face_canvas(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Zoomed out onto a plain canvas of the picture's mean colour with a soft vignette, off-centre.
    small, top, left = _shrunk(rgb, strength)
    h, w = rgb.shape[:2]
    mean = rgb.reshape(-1, 3).mean(axis=0).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1.0 - 0.25 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    out = np.asarray(np.clip(mean[None, None, :] * vignette[..., None], 0, 255), dtype=np.uint8)
    dx = int(rng.integers(-left // 2, left // 2 + 1)) if left > 1 else 0
    out[top : top + small.shape[0], left + dx : left + dx + small.shape[1]] = small
    return out


def _paste(rgb: Rgb, patch: Rgb, x: int, y: int) -> Rgb:
    out = rgb.astype(np.float32)
    ph, pw = patch.shape[:2]
    h, w = rgb.shape[:2]
    x, y = int(np.clip(x, 0, w - pw)), int(np.clip(y, 0, h - ph))
    mask = np.zeros((ph, pw), dtype=np.float32)
    cv2.ellipse(mask, (pw // 2, ph // 2), (pw * 9 // 20, ph * 9 // 20), 0, 0, 360, (1.0,), -1)
    soft = _feather(mask, pw * 0.04)
    out[y : y + ph, x : x + pw] = out[y : y + ph, x : x + pw] * (1 - soft) + patch * soft
    return np.clip(out, 0, 255).astype(np.uint8)


def extra_face_copy(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A second copy of the face, 45-70 % of its size, pasted beside it (a duplicated person).
    face = haar_face(rgb)
    scale = 0.4 + 0.3 * strength
    grow = 1.25
    x0, y0 = max(0, round(face.cx - face.w * grow / 2)), max(0, round(face.cy - face.h * grow / 2))
    patch = rgb[y0 : y0 + round(face.h * grow), x0 : x0 + round(face.w * grow)]
    patch = np.asarray(
        cv2.resize(patch, (max(8, round(patch.shape[1] * scale)),) * 2, interpolation=cv2.INTER_AREA),
        np.uint8,
    )
    w = rgb.shape[1]
    right = face.cx < w / 2
    x = w - patch.shape[1] if right else 0
    return _paste(rgb, np.asarray(patch, np.uint8), x, round(face.y + face.h * 0.1))


def extra_face_mirror(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A mirrored, slightly rotated copy of the face overlapping the lower corner of the frame.
    face = haar_face(rgb)
    scale = 0.45 + 0.3 * strength
    patch = rgb[face.y : face.y + face.h, face.x : face.x + face.w][:, ::-1]
    side = max(8, round(face.w * scale))
    patch = np.asarray(
        cv2.resize(np.ascontiguousarray(patch), (side, side), interpolation=cv2.INTER_AREA), np.uint8
    )
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(-15, 15)), 1.0)
    patch = np.asarray(cv2.warpAffine(patch, turn, (side, side), borderMode=cv2.BORDER_REFLECT), np.uint8)
    h, w = rgb.shape[:2]
    x = 0 if face.cx > w / 2 else w - side
    return _paste(rgb, np.asarray(patch, np.uint8), x, h - side)


def lopsided_lift(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # One mouth corner dragged up (a displacement field centred on it): a one-sided sneer.
    face = haar_face(rgb)
    mx, my, half = mouth_of(face)
    corner_x = mx + half * float(rng.choice([-1.0, 1.0]))
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = 0.22 * face.w
    weight = np.exp(-((xx - corner_x) ** 2 + (yy - my) ** 2) / (2 * radius * radius))
    lift = (0.06 + 0.1 * strength) * face.h
    return np.asarray(cv2.remap(rgb, xx, yy + lift * weight, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def lopsided_tilt(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The mouth region rotated about its centre, the face around it untouched.
    face = haar_face(rgb)
    mx, my, half = mouth_of(face)
    angle = float(rng.choice([-1.0, 1.0])) * (10.0 + 14.0 * strength)
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((mx, my), angle, 1.0), rgb.shape[1::-1])
    mask = np.zeros(rgb.shape[:2], dtype=np.float32)
    cv2.ellipse(mask, (round(mx), round(my)), (round(half * 1.5), round(half * 0.8)), 0, 0, 360, (1.0,), -1)
    soft = _feather(mask, half * 0.25)
    return np.asarray(np.clip(rgb * (1 - soft) + turned * soft, 0, 255), dtype=np.uint8)


def _background_mask(rgb: Rgb, face: Box) -> Floats:
    """Where the backdrop is: beside and above the head, away from the body under the face."""
    h, w = rgb.shape[:2]
    person = np.zeros((h, w), dtype=np.float32)
    cv2.ellipse(
        person,
        (round(face.cx), round(face.cy)),
        (round(face.w * 0.85), round(face.h * 1.0)),
        0,
        0,
        360,
        (1.0,),
        -1,
    )
    body_top = round(face.y + face.h * 1.05)
    person[body_top:, max(0, round(face.cx - face.w * 1.3)) : round(face.cx + face.w * 1.3)] = 1.0
    return 1.0 - person


# A frame whose backdrop beside and above the head is under this share of it (a tight crop: the
# person fills it) has no backdrop to clutter; a clutter defect there would change nothing visible.
MIN_BACKDROP_SHARE = 0.03


def _backdrop(rgb: Rgb, face: Box) -> Floats:
    mask = _background_mask(rgb, face)
    if float(mask.mean()) < MIN_BACKDROP_SHARE:
        raise ValueError("this defect needs a backdrop beside the head (the person fills the frame)")
    return mask


def clutter_shapes(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Random lines, boxes and discs of random colours behind the person (a busy room).
    face = haar_face(rgb)
    backdrop = _backdrop(rgb, face)
    h, w = rgb.shape[:2]
    layer = rgb.copy()
    for _ in range(round(150 + 350 * strength)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(3, w // 40), max(6, w // 8)))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.line(
                layer,
                (x, y),
                (x + int(rng.integers(-size, size)) * 2, y + int(rng.integers(-size, size)) * 2),
                colour,
                max(1, w // 250),
            )
        elif kind == 1:
            cv2.rectangle(layer, (x, y), (x + size, y + size // 2), colour, -1)
        else:
            cv2.circle(layer, (x, y), size // 2, colour, -1)
    keep = _feather(backdrop, 2.0)
    return np.asarray(np.clip(rgb * (1 - keep) + layer * keep, 0, 255), dtype=np.uint8)


def clutter_shelves(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Shelves of book spines behind the person: rows of narrow rectangles, random colours and widths.
    face = haar_face(rgb)
    backdrop = _backdrop(rgb, face)
    h, w = rgb.shape[:2]
    layer = np.zeros_like(rgb)
    row = max(8, round(h * (0.16 - 0.06 * strength)))
    for top in range(0, h, row):
        x = 0
        while x < w:
            spine = int(rng.integers(max(2, w // 120), max(4, w // 30)))
            colour = rng.integers(20, 235, 3)
            layer[top : top + row - 2, x : x + spine] = colour
            x += spine + 1
    keep = _feather(backdrop, 2.0) * (0.75 + 0.25 * strength)
    return np.asarray(np.clip(rgb * (1 - keep) + layer * keep, 0, 255), dtype=np.uint8)


def face_blown_out(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The face alone overexposed (a flash too close): +2 to +3.5 stops on the face, clipped.
    face = haar_face(rgb)
    soft = _feather(_face_ellipse(rgb.shape, face, 1.1), face.w * 0.1)
    stops = 1.5 + 2.0 * strength
    return from_linear(to_linear(rgb) * 2.0 ** (stops * soft))


def face_hotspot(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A specular flash hot spot: a broad gaussian of added light, centred on the face, that clips.
    face = haar_face(rgb)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    spot = np.exp(-((xx - face.cx) ** 2 + (yy - face.cy) ** 2) / (2 * (0.45 * face.w) ** 2))
    return from_linear(to_linear(rgb) + (0.6 + 1.2 * strength) * spot[..., None])


def skin_shift_linear(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The face's complexion changed: 1.2-2 stops lighter or darker in linear light, face only.
    face = haar_face(rgb)
    soft = _feather(_face_ellipse(rgb.shape, face, 1.05), face.w * 0.06)
    stops = float(rng.choice([-1.0, 1.0])) * (0.8 + 1.2 * strength)
    return from_linear(to_linear(rgb) * 2.0 ** (stops * soft))


def skin_shift_hue(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # The face's colour pushed along a hue in Lab (greener, yellower or redder), the rest untouched.
    face = haar_face(rgb)
    soft = _feather(_face_ellipse(rgb.shape, face, 1.05), face.w * 0.06)
    lab = np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB), dtype=np.float32)
    angle = float(rng.uniform(0, 2 * math.pi))
    amount = 12.0 + 20.0 * strength
    lab[..., 1] += amount * math.cos(angle) * soft[..., 0]
    lab[..., 2] += amount * math.sin(angle) * soft[..., 0]
    lab[..., 0] -= (6.0 + 10.0 * strength) * soft[..., 0]
    back = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(back * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _g(name: str, family: str, expect: tuple[str, ...], how: str, make: object) -> Generator:
    return Generator(name=name, family=family, expect=expect, how=how, make=make)  # type: ignore[arg-type]


_SKIN = ("skin_tone_stops", "skin_tone_delta_e")
_FACE_OVER = ("face_exposure", "face_clipping", "skin_tone_stops")
_EYES = ("eyes_open", "eye_contrast")
_DUPLICATE = ("face_count", "duplicated_features")
FACE_GENERATORS: tuple[Generator, ...] = (
    _g("shadow_hard", "shadow", ("face_shadow",), "sharp-edged shadow at 25-65 deg", shadow_hard),
    _g("shadow_soft", "shadow", ("face_shadow",), "soft-edged shadow at 25-65 deg", shadow_soft),
    _g("eyes_painted", "closed_eyes", _EYES, "skin painted over Haar eye boxes", closed_eyes_paint),
    _g("eyes_squashed", "closed_eyes", _EYES, "eye rows squashed, inpainted", closed_eyes_squash),
    _g("cut_crop", "face_cut", ("face_margin", "face_detected"), "frame cropped through the face", face_cut_crop),
    _g("cut_zoom", "face_cut", ("face_margin", "face_detected"), "zoomed in off-centre", face_cut_zoom),
    _g("small_reflect", "small_face", ("face_size",), "zoomed out, mirrored border", small_face_reflect),
    _g("small_canvas", "small_face", ("face_size",), "zoomed out on a plain canvas", small_face_canvas),
    _g("extra_copy", "extra_face", ("face_count",), "scaled copy of the face beside it", extra_face_copy),
    _g("extra_mirror", "extra_face", ("face_count",), "mirrored rotated copy in a corner", extra_face_mirror),
    _g("mouth_lift", "lopsided_mouth", ("expression_asymmetry",), "one corner displaced up", lopsided_lift),
    _g("mouth_tilt", "lopsided_mouth", ("expression_asymmetry",), "mouth region rotated", lopsided_tilt),
    _g("clutter_shapes", "clutter", ("background_clutter",), "random shapes behind the head", clutter_shapes),
    _g("clutter_shelves", "clutter", ("background_clutter",), "book-spine shelves behind", clutter_shelves),
    _g("face_blown", "face_overexposed", _FACE_OVER, "face +2..3.5 stops, clipped", face_blown_out),
    _g("face_hotspot", "face_overexposed", _FACE_OVER, "additive flash hot spot", face_hotspot),
    _g("skin_stops", "skin_tone", _SKIN, "face lighter/darker in linear light", skin_shift_linear),
    _g("skin_hue", "skin_tone", _SKIN, "face hue pushed in Lab", skin_shift_hue),
    _g("dup_eye", "duplicated_feature", _DUPLICATE, "Haar eye copied to forehead/cheek, Poisson-blended", duplicated_eye),
    _g("dup_mouth", "duplicated_feature", _DUPLICATE, "mouth mirrored, turned, alpha-blended on forehead/chin", duplicated_mouth),
)  # fmt: skip
