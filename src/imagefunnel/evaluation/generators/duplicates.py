"""Duplicated features: a copy of an eye or of the mouth where no such feature belongs.

The classic generation artifact of a third eye or a second mouth. Two ways that differ in both the
feature and the method: an eye (found by the Haar eye cascade) copied onto the forehead or a cheek
and blended in by Poisson blending, which takes its colour from the skin around it; and the mouth
(placed by the Haar face box's proportions) mirrored, turned and laid over the forehead or the chin
with a feathered alpha mask, keeping its own colour. Each is planned first as a :class:`Stamp` (what
is copied, how, to where) and then blended, so what was pasted can be checked against its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.evaluation.generators.base import Box, Rgb, haar_eyes, haar_face, mouth_of

__all__ = ["Stamp", "duplicated_eye", "duplicated_mouth", "eye_stamp", "mouth_stamp"]

Floats = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Stamp:
    """A feature copied elsewhere: where it came from, the copy as pasted, its weight, where it lands.

    ``patch`` is the copy after resizing (and, for the mouth, mirroring and turning) but before any
    contrast or opacity; ``mask`` weighs it (0..1, the patch's size); ``x``, ``y`` is its top-left.
    """

    source: Box
    patch: Rgb
    mask: Floats
    x: int
    y: int

    @property
    def box(self) -> Box:
        """Where the copy lands: nothing outside this box is changed."""
        return Box(self.x, self.y, self.patch.shape[1], self.patch.shape[0])


def _scale(strength: float) -> float:
    # The copy at 0.9 of its source's size at 0.25, 1.0 at 0.5, 1.2 at 1: a bigger copy is plainer.
    return 0.8 + 0.4 * strength


def _fits(shape: tuple[int, ...], cx: float, cy: float, pw: int, ph: int) -> tuple[int, int] | None:
    """The top-left of a ``pw`` x ``ph`` box centred on (cx, cy) if it lies inside the frame (one
    pixel in: Poisson blending needs a border around its mask), else None."""
    x, y = round(cx - pw / 2), round(cy - ph / 2)
    h, w = shape[:2]
    if x < 1 or y < 1 or x + pw > w - 1 or y + ph > h - 1:
        return None
    return x, y


def _place(
    shape: tuple[int, ...], sites: list[tuple[float, float]], pw: int, ph: int, what: str
) -> tuple[int, int]:
    # The first site (the one drawn comes first) where the whole copy fits in the frame.
    for cx, cy in sites:
        spot = _fits(shape, cx, cy, pw, ph)
        if spot is not None:
            return spot
    raise ValueError(f"this defect needs room in the frame for a copy of the {what}")


def _ellipse_mask(pw: int, ph: int, axes: tuple[float, float], angle: float, *, down: float = 0.5) -> Floats:
    """A filled ellipse in a ``pw`` x ``ph`` patch, centred across and ``down`` of the way down."""
    mask = np.zeros((ph, pw), dtype=np.float32)
    centre = (pw // 2, round(ph * down))
    cv2.ellipse(mask, centre, (round(axes[0]), round(axes[1])), angle, 0, 360, (1.0,), -1)
    return mask


def eye_stamp(rgb: Rgb, strength: float, rng: np.random.Generator) -> Stamp:
    """One Haar eye, copied at 0.9-1.2 of its size to mid-forehead above the eyes or to the cheek
    under it (drawn at random; the other site if the drawn one leaves the frame)."""
    face = haar_face(rgb)
    eyes = haar_eyes(rgb, face)
    which = int(rng.integers(0, 2))
    forehead_first = bool(rng.random() < 0.5)
    eye = eyes[which]
    side = max(8, round(eye.w * _scale(strength)))
    source = rgb[eye.y : eye.y + eye.h, eye.x : eye.x + eye.w]
    patch = np.asarray(cv2.resize(source, (side, side), interpolation=cv2.INTER_LINEAR), np.uint8)
    # Mid-forehead: between the eyes, its box ending where theirs begin (their tops hold the brows).
    between = ((eyes[0].cx + eyes[1].cx) / 2, (eyes[0].cy + eyes[1].cy) / 2 - 0.5 * eye.h - 0.5 * side)
    # The cheek: under the copied eye, a little outwards (away from the nose), its box beginning
    # where the eye's ends.
    outwards = -1.0 if which == 0 else 1.0
    cheek = (eye.cx + outwards * 0.04 * face.w, eye.cy + 0.5 * eye.h + 0.5 * side)
    sites = [between, cheek] if forehead_first else [cheek, between]
    x, y = _place(rgb.shape, sites, side, side, "eye")
    # The eye sits a little below the middle of a Haar eye box, whose top holds the brow: the mask
    # leaves the brow out, so that its edge runs through lid and skin, which blend without a seam.
    mask = _ellipse_mask(side, side, (side * 0.46, side * 0.3), 0.0, down=0.56)
    return Stamp(source=eye, patch=patch, mask=mask, x=x, y=y)


def duplicated_eye(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # Poisson blending keeps the copy's gradients (iris, lashes, lids) and takes its base colour
    # from the skin around it, so the third eye has no pasted edge; strength scales its contrast
    # (0.75 of the source's at 0.25, 0.9 at 0.5, 1.2 at 1: a glaring eye) and its size.
    stamp = eye_stamp(rgb, strength, rng)
    patch = stamp.patch.astype(np.float32)
    mean = patch.reshape(-1, 3).mean(axis=0)
    contrast = 0.6 + 0.6 * strength
    toned = np.clip(mean + contrast * (patch - mean), 0, 255).astype(np.uint8)
    mask = (stamp.mask > 0.5).astype(np.uint8) * 255
    # seamlessClone centres the mask's bounding box on this point (not the patch's centre): so that
    # the copy lands in the stamp's box, the point is that box's centre within the stamp.
    ys, xs = np.nonzero(mask)
    centre = (
        stamp.x + (int(xs.min()) + int(xs.max()) + 1) // 2,
        stamp.y + (int(ys.min()) + int(ys.max()) + 1) // 2,
    )
    blended = cv2.seamlessClone(toned, np.ascontiguousarray(rgb), mask, centre, cv2.NORMAL_CLONE)
    return np.asarray(blended, dtype=np.uint8)


def mouth_stamp(rgb: Rgb, strength: float, rng: np.random.Generator) -> Stamp:
    """The mouth region by the face box's proportions (centre at 0.8 of its height, half-width 0.2 of
    its width, as the lopsided mouth edits place it), mirrored, turned 6-15 degrees, scaled 0.9-1.2, on the forehead (or the
    chin when the forehead is out of the frame)."""
    face = haar_face(rgb)
    turn = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(6.0, 15.0))
    mx, my, half = mouth_of(face)
    sw, sh = round(half * 2.5), round(half * 1.25)
    source = Box(round(mx - sw / 2), round(my - sh / 2), sw, sh)
    h, w = rgb.shape[:2]
    if source.x < 0 or source.y < 0 or source.x + sw > w or source.y + sh > h:
        raise ValueError("this defect needs a face whose mouth is inside the frame")
    region = rgb[source.y : source.y + sh, source.x : source.x + sw][:, ::-1]
    pw, ph = max(8, round(sw * _scale(strength))), max(4, round(sh * _scale(strength)))
    patch = np.asarray(cv2.resize(np.ascontiguousarray(region), (pw, ph)), np.uint8)
    turned = cv2.getRotationMatrix2D((pw / 2, ph / 2), turn, 1.0)
    patch = np.asarray(cv2.warpAffine(patch, turned, (pw, ph), borderMode=cv2.BORDER_REFLECT), np.uint8)
    # The forehead, well above the eyes (at about 0.38 of the box): there a mouth is unmistakable.
    # Only where a tight crop leaves no room above does it go to the chin, just under the mouth
    # (the copy is seen over the middle 0.6 of its box, so the box may overlap the lips' margin).
    forehead = (face.cx, face.y + 0.17 * face.h)
    chin = (face.cx, my + 0.25 * sh + 0.35 * ph)
    x, y = _place(rgb.shape, [forehead, chin], pw, ph, "mouth")
    # Drawn smaller than the patch so that, turned and feathered, it fades out inside it.
    hard = _ellipse_mask(pw, ph, (pw * 0.4, ph * 0.3), turn)
    mask = np.asarray(cv2.GaussianBlur(hard, (0, 0), sigmaX=max(0.5, pw * 0.03)), dtype=np.float32)
    return Stamp(source=source, patch=patch, mask=mask, x=x, y=y)


def duplicated_mouth(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A plain alpha blend under a feathered mask: the copy keeps its own lip colour, which is what
    # makes a mouth on the forehead stand out; strength scales its opacity (0.66 at 0.25, 0.78 at
    # 0.5, opaque at 1) and its size.
    stamp = mouth_stamp(rgb, strength, rng)
    opacity = 0.55 + 0.45 * strength
    alpha = (stamp.mask * opacity)[..., None]
    box = stamp.box
    out = rgb.copy()
    under = rgb[box.y : box.y + box.h, box.x : box.x + box.w].astype(np.float32)
    mixed = under * (1 - alpha) + stamp.patch.astype(np.float32) * alpha
    out[box.y : box.y + box.h, box.x : box.x + box.w] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out
