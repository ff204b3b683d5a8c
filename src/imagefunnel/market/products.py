"""The market's product-shot "model": seeded procedural studio photos of one object on a backdrop.

A provider sees only the prompt, the size, the seed, the model and the images sent with the request,
so that is all the market keys on. A prompt that names a product (a box, a bottle, a mug...) gets a
product shot instead of a portrait: the object the prompt names, in the colour it names, on the
backdrop colour it names (white when it names none), lit from one side, with a soft contact shadow
and mild sensor noise. When the request carries a photo (an image-conditioned model given a reference
photo of the product), the product takes that photo's colour, as an IP-adapter or img2img model
would: that is how a catalogue job's output can match its reference photo.

Defects are drawn by the market's own generator, at the provider's ``defect_rate`` and from its
``product_defect_mix`` (``DEFAULT_PRODUCT_MIX`` when it gives none): a product off centre, cut off by
the frame, in the wrong colour, a stray watermark, a busy room behind it; or one of the generic
pixel defects (blur, noise, exposure, blocking...). None of it looks at the scorers.
"""

from __future__ import annotations

import colorsys
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.market.defects import FACE_DEFECTS, Defect, Image

__all__ = [
    "DEFAULT_PRODUCT_MIX",
    "PRODUCT_DEFECTS",
    "ProductAsk",
    "ProductScene",
    "plan_scene",
    "product_ask",
    "product_kinds",
    "reference_color",
    "render_scene",
]

Shape = Literal["box", "bottle", "mug"]
Rgb = tuple[int, int, int]
Floats = NDArray[np.float32]
Bytes = NDArray[np.uint8]

# Defects only a product shot can carry (a portrait has no product to move, cut or recolour).
PRODUCT_DEFECTS = frozenset(
    {
        Defect.PRODUCT_OFF_CENTRE,
        Defect.PRODUCT_CUT_OFF,
        Defect.PRODUCT_WRONG_COLOUR,
        Defect.PRODUCT_STRAY_TEXT,
        Defect.PRODUCT_BUSY_BACKDROP,
    }
)
# What goes wrong with product shots when a provider's profile does not say.
DEFAULT_PRODUCT_MIX: Mapping[Defect, float] = {
    Defect.PRODUCT_OFF_CENTRE: 2.0,
    Defect.PRODUCT_CUT_OFF: 2.0,
    Defect.PRODUCT_WRONG_COLOUR: 2.0,
    Defect.PRODUCT_STRAY_TEXT: 1.0,
    Defect.PRODUCT_BUSY_BACKDROP: 2.0,
    Defect.BLUR: 1.0,
}

# Words that make a prompt a product shot, and the shape each is drawn as.
_NOUNS: Mapping[str, Shape] = {
    "box": "box",
    "giftbox": "box",
    "package": "box",
    "packaging": "box",
    "carton": "box",
    "parcel": "box",
    "bottle": "bottle",
    "perfume": "bottle",
    "flask": "bottle",
    "jar": "bottle",
    "tube": "bottle",
    "mug": "mug",
    "cup": "mug",
}
# A person in the prompt makes it a portrait, whatever they hold.
_PEOPLE = frozenset(
    {
        "person",
        "people",
        "man",
        "woman",
        "men",
        "women",
        "portrait",
        "headshot",
        "face",
        "model",
        "hand",
        "hands",
    }
)
# Named colours (sRGB). "red" is a deep catalogue red.
_COLORS: Mapping[str, Rgb] = {
    "white": (250, 250, 250),
    "black": (28, 28, 30),
    "grey": (128, 128, 130),
    "gray": (128, 128, 130),
    "silver": (190, 192, 196),
    "red": (196, 30, 40),
    "crimson": (170, 20, 50),
    "orange": (232, 120, 30),
    "yellow": (240, 200, 40),
    "gold": (200, 160, 60),
    "green": (40, 150, 70),
    "teal": (20, 130, 130),
    "blue": (30, 80, 180),
    "navy": (25, 35, 90),
    "purple": (110, 50, 150),
    "pink": (235, 120, 160),
    "brown": (120, 75, 45),
    "beige": (225, 210, 185),
    "cream": (245, 238, 220),
}
_BACKDROP = re.compile(
    r"\bon (?:an? )?(?:(?:seamless|plain|clean|solid|light|pale|soft|studio|pure|flat) )*"
    r"(?P<color>[a-z]+)(?: (?:backdrop|background|paper|sweep|seamless))?\b"
)
_ABOVE = re.compile(
    r"\b(?:empty|negative|free|copy) space (?:above|at the top)|\broom (?:above|for (?:a |the )?(?:headline|copy|text))"
)
_DEFAULT_PRODUCT: Rgb = (196, 30, 40)
_DEFAULT_BACKDROP: Rgb = (255, 255, 255)
_NOISE_SD = 1.5
_TEXTS = ("SAMPLE", "STOCK PHOTO", "PREVIEW", "© STUDIO")


@dataclass(frozen=True, slots=True)
class ProductAsk:
    """What a prompt asks for: the object, its colour, the backdrop, and where to leave room."""

    shape: Shape
    color: Rgb
    background: Rgb
    room_above: bool = False


@dataclass(frozen=True, slots=True)
class ProductScene:
    """Every choice of one product shot (positions and sizes in fractions of the frame)."""

    shape: Shape
    color: Rgb
    background: Rgb
    cx: float
    cy: float
    height: float  # the object's height, fraction of the frame's height
    aspect: float  # width / height of the object's front
    depth: float  # the visible side face, fraction of the front's width (negative: on the left)
    light: float  # -1 lit from the left .. 1 from the right
    accent: bool  # a ribbon (box), a label (bottle, mug)
    # Defect parameters, drawn with the scene whatever the defect, so a defect changes only itself.
    direction: float  # radians: where an off-centre or cut-off product went
    hue_turn: float  # of a wrong colour, in turns (0.17 .. 0.5)
    text: str
    clutter_seed: int


def product_ask(prompt: str) -> ProductAsk | None:
    """The product ``prompt`` asks for, or ``None`` if it is not a product shot: a product shot
    names the product (a box, a bottle, a mug...) and the colour of what it stands on ("on white",
    "on a seamless grey backdrop"), and no person."""
    text = prompt.lower()
    words = re.findall(r"[a-z]+", text)
    shape = next((_NOUNS[word] for word in words if word in _NOUNS), None)
    if shape is None or _PEOPLE.intersection(words):
        return None
    backdrop = next((m for m in _BACKDROP.finditer(text) if m.group("color") in _COLORS), None)
    if backdrop is None:
        return None
    name = backdrop.group("color")
    background = _DEFAULT_BACKDROP if name == "white" else _COLORS[name]
    # The product's colour: the first colour word that is not the backdrop's.
    cut = text if backdrop is None else text[: backdrop.start()] + " " + text[backdrop.end() :]
    color = next((_COLORS[w] for w in re.findall(r"[a-z]+", cut) if w in _COLORS), _DEFAULT_PRODUCT)
    return ProductAsk(shape=shape, color=color, background=background, room_above=bool(_ABOVE.search(text)))


def reference_color(photos: Sequence[bytes]) -> Rgb | None:
    """The product's colour in the first photo of ``photos`` that decodes: the median of the pixels
    that clearly differ from the colour along its border (the backdrop). ``None`` if there is none."""
    for data in photos:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return _object_color(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))
    return None


def _object_color(rgb: Image) -> Rgb | None:
    img = rgb.astype(np.float32)
    h, w = img.shape[:2]
    band = max(2, min(h, w) // 30)
    border = np.concatenate(
        [
            img[:band].reshape(-1, 3),
            img[-band:].reshape(-1, 3),
            img[:, :band].reshape(-1, 3),
            img[:, -band:].reshape(-1, 3),
        ]
    )
    backdrop = np.median(border, axis=0)
    far = np.abs(img - backdrop).max(axis=-1) > 60
    if far.mean() < 0.01:
        return None
    median = np.median(img[far], axis=0)
    return (int(median[0]), int(median[1]), int(median[2]))


def plan_scene(ask: ProductAsk, rng: np.random.Generator) -> ProductScene:
    """Draw every random choice of one product shot (a fixed order: the reproducibility contract)."""
    height = float(rng.uniform(0.42, 0.56))
    aspect = {"box": rng.uniform(0.8, 1.35), "bottle": rng.uniform(0.38, 0.5), "mug": rng.uniform(0.72, 0.9)}[
        ask.shape
    ]
    if ask.room_above:  # the object lower and smaller, the top of the frame left empty
        height *= 0.8
    cx = 0.5 + float(rng.uniform(-0.03, 0.03))
    cy = (0.62 if ask.room_above else 0.52) + float(rng.uniform(-0.03, 0.03))
    side = float(rng.uniform(0.18, 0.38)) * (1 if rng.random() < 0.5 else -1)
    return ProductScene(
        shape=ask.shape,
        color=ask.color,
        background=ask.background,
        cx=cx,
        cy=cy,
        height=height,
        aspect=float(aspect),
        depth=side if ask.shape == "box" else 0.0,
        light=float(rng.uniform(-1.0, 1.0)),
        accent=bool(rng.random() < 0.6),
        direction=float(rng.uniform(0.0, 2 * math.pi)),
        hue_turn=float(rng.uniform(0.17, 0.5)),
        text=_TEXTS[int(rng.integers(len(_TEXTS)))],
        clutter_seed=int(rng.integers(0, 2**31)),
    )


def product_kinds(mix: Mapping[Defect, float]) -> dict[Defect, float]:
    """The kinds of ``mix`` a product shot can carry (face defects need a face)."""
    return {
        kind: w
        for kind, w in mix.items()
        if w > 0 and kind not in FACE_DEFECTS and kind is not Defect.FACE_CROPPED_OUT
    }


def render_scene(
    scene: ProductScene,
    width: int,
    height: int,
    *,
    seed: int,
    defect: Defect | None = None,
    strength: float = 0.0,
) -> Image:
    """The RGB image of ``scene``, with ``defect`` (a product one) drawn in at ``strength``."""
    scene = _displaced(scene, defect, strength, width, height)
    rng = np.random.default_rng(seed)
    bg = np.array(scene.background, np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[:] = bg
    # A soft studio falloff towards the bottom of the sweep.
    img *= np.linspace(1.0, 0.975, height, dtype=np.float32)[:, None, None]
    if defect is Defect.PRODUCT_BUSY_BACKDROP:
        img = _room(img, scene, strength)
    color = scene.color
    if defect is Defect.PRODUCT_WRONG_COLOUR:
        color = _turn_hue(color, scene.hue_turn * (0.6 + 0.4 * strength))
    mask, shade = _object(scene, width, height)
    _shadow(img, mask, scene)
    product = np.array(color, np.float32)[None, None, :] * shade[..., None]
    if scene.accent:
        product = _accent(product, scene, width, height)
    alpha = mask[..., None]
    img = img * (1 - alpha) + np.clip(product, 0, 255) * alpha
    if defect is Defect.PRODUCT_STRAY_TEXT:
        img = _watermark(img, scene, strength)
    img += rng.normal(0.0, _NOISE_SD, img.shape).astype(np.float32)
    return np.asarray(np.clip(img, 0, 255), dtype=np.uint8)


def _displaced(
    scene: ProductScene, defect: Defect | None, strength: float, width: int, height: int
) -> ProductScene:
    """Where an off-centre or cut-off product went."""
    if defect not in (Defect.PRODUCT_OFF_CENTRE, Defect.PRODUCT_CUT_OFF):
        return scene
    dx, dy = math.cos(scene.direction), math.sin(scene.direction)
    obj_h = scene.height
    obj_w = scene.height * scene.aspect * (1 + abs(scene.depth)) * height / width
    if defect is Defect.PRODUCT_OFF_CENTRE:
        # Smaller, pushed towards a corner, but whole and clear of the frame.
        obj_h *= 0.7
        obj_w *= 0.7
        room_x, room_y = max(0.0, 0.5 - obj_w / 2 - 0.04), max(0.0, 0.5 - obj_h / 2 - 0.06)
        reach = 0.75 + 0.25 * strength
        return _replace(scene, cx=0.5 + dx * room_x * reach, cy=0.5 + dy * room_y * reach, height=obj_h)
    # Cut off: larger, and pushed past the nearest edge in its direction by part of its size.
    grown = min(0.9, scene.height * 1.25)
    obj_w *= grown / scene.height
    past = 0.15 + 0.25 * strength
    if abs(dx) * obj_w >= abs(dy) * grown:  # out at the left or the right
        cx = 0.5 + math.copysign(0.5 - obj_w / 2 + obj_w * past, dx)
        return _replace(scene, cx=cx, cy=scene.cy, height=grown)
    cy = 0.5 + math.copysign(0.5 - grown / 2 + grown * past, dy)
    return _replace(scene, cx=scene.cx, cy=cy, height=grown)


def _replace(scene: ProductScene, *, cx: float, cy: float, height: float) -> ProductScene:
    return replace(scene, cx=cx, cy=cy, height=height)


def _object(scene: ProductScene, width: int, height: int) -> tuple[Floats, Floats]:
    """The object's coverage (0..1, anti-aliased) and its shading (1 = the colour as lit head-on)."""
    ss = 2  # supersampled, then averaged: smooth edges
    w, h = width * ss, height * ss
    obj_h = scene.height * h
    front_w = obj_h * scene.aspect
    cx, cy = scene.cx * w, scene.cy * h
    layers: list[tuple[Bytes, float | Floats]] = []
    xs = np.arange(w, dtype=np.float32)[None, :]
    if scene.shape == "box":
        side_w = front_w * abs(scene.depth)
        top_h = obj_h * 0.16
        total_w = front_w + side_w
        left = cx - total_w / 2 + (side_w if scene.depth < 0 else 0.0)
        top = cy - (obj_h + top_h) / 2 + top_h
        front = [(left, top), (left + front_w, top), (left + front_w, top + obj_h), (left, top + obj_h)]
        sgn = 1.0 if scene.depth > 0 else -1.0
        edge = left + front_w if scene.depth > 0 else left
        side = [
            (edge, top),
            (edge + sgn * side_w, top - top_h),
            (edge + sgn * side_w, top - top_h + obj_h),
            (edge, top + obj_h),
        ]
        lid = [
            (left, top),
            (left + front_w, top),
            (left + front_w + sgn * side_w, top - top_h),
            (left + sgn * side_w, top - top_h),
        ]
        lit_side = scene.light * sgn > 0
        layers = [
            (_poly(front, w, h), 1.0 - 0.04 * abs(scene.light)),
            (_poly(side, w, h), 0.9 if lit_side else 0.68),
            (_poly(lid, w, h), 1.14),
        ]
    else:
        body_w = front_w
        body_top = cy - obj_h / 2 + (obj_h * 0.3 if scene.shape == "bottle" else 0.0)
        body = np.zeros((h, w), np.uint8)
        radius = int(body_w * (0.18 if scene.shape == "bottle" else 0.06))
        _rounded(body, cx - body_w / 2, body_top, cx + body_w / 2, cy + obj_h / 2, radius)
        u = np.clip((xs - cx) / (body_w / 2), -1.0, 1.0)
        # A cylinder: brightest where its surface faces the light, a specular stripe near it.
        facing = np.sqrt(np.clip(1 - u * u, 0, 1))
        light_u = 0.45 * scene.light
        shade = 0.72 + 0.3 * facing * (1 - 0.35 * np.abs(u - light_u))
        shade = shade + 0.35 * np.exp(-(((u - light_u) / 0.07) ** 2))
        layers.append((body.astype(np.float32), np.broadcast_to(shade, (h, w))))
        if scene.shape == "bottle":
            neck = np.zeros((h, w), np.uint8)
            neck_w = body_w * 0.34
            _rounded(
                neck,
                cx - neck_w / 2,
                cy - obj_h / 2 + obj_h * 0.08,
                cx + neck_w / 2,
                body_top + radius,
                int(neck_w * 0.2),
            )
            layers.append((neck.astype(np.float32), np.broadcast_to(shade * 0.95, (h, w))))
            cap = np.zeros((h, w), np.uint8)
            cap_w = neck_w * 1.1
            _rounded(
                cap,
                cx - cap_w / 2,
                cy - obj_h / 2,
                cx + cap_w / 2,
                cy - obj_h / 2 + obj_h * 0.1,
                int(cap_w * 0.15),
            )
            layers.append((cap.astype(np.float32), 0.35))
        else:
            handle = np.zeros((h, w), np.uint8)
            hx = cx + (body_w / 2 if scene.light <= 0 else -body_w / 2)
            cv2.ellipse(
                handle,
                (int(hx), int(cy)),
                (int(body_w * 0.22), int(obj_h * 0.26)),
                0,
                0,
                360,
                (255,),
                int(body_w * 0.09),
            )
            layers.insert(0, (handle.astype(np.float32), 0.8))
            rim = np.zeros((h, w), np.uint8)
            cv2.ellipse(
                rim, (int(cx), int(body_top)), (int(body_w / 2), int(obj_h * 0.06)), 0, 0, 360, (255,), -1
            )
            layers.append((rim.astype(np.float32), 0.55))
    mask = np.zeros((h, w), np.float32)
    shade_img = np.ones((h, w), np.float32)
    for layer, value in layers:
        cover = (layer > 0).astype(np.float32)
        shade_img = np.where(cover > 0, value, shade_img)
        mask = np.maximum(mask, cover)
    small = np.asarray(cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA), np.float32)
    lit = np.asarray(cv2.resize(shade_img, (width, height), interpolation=cv2.INTER_AREA), np.float32)
    return small, lit


def _poly(points: list[tuple[float, float]], w: int, h: int) -> Bytes:
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, [np.round(np.array(points)).astype(np.int32)], (255,))
    return out


def _rounded(out: Bytes, x0: float, y0: float, x1: float, y1: float, r: int) -> None:
    a, b, c, d = int(x0), int(y0), int(x1), int(y1)
    r = max(0, min(r, (c - a) // 2, (d - b) // 2))
    cv2.rectangle(out, (a + r, b), (c - r, d), (255,), -1)
    cv2.rectangle(out, (a, b + r), (c, d - r), (255,), -1)
    for x, y in ((a + r, b + r), (c - r, b + r), (a + r, d - r), (c - r, d - r)):
        cv2.circle(out, (x, y), r, (255,), -1)


def _shadow(img: Floats, mask: Floats, scene: ProductScene) -> None:
    """A soft contact shadow on the floor under the object, thrown away from the light."""
    h, w = mask.shape
    ys = np.nonzero(mask.max(axis=1) > 0.5)[0]
    xs = np.nonzero(mask.max(axis=0) > 0.5)[0]
    if len(ys) == 0:
        return
    bottom, left, right = int(ys.max()), int(xs.min()), int(xs.max())
    shadow = np.zeros((h, w), np.float32)
    cx = (left + right) / 2 - scene.light * (right - left) * 0.08
    cv2.ellipse(
        shadow,
        (int(cx), bottom),
        (max(1, int((right - left) * 0.55)), max(1, int((right - left) * 0.06))),
        0,
        0,
        360,
        (1.0,),
        -1,
    )
    shadow = np.asarray(cv2.GaussianBlur(shadow, (0, 0), sigmaX=max(1.0, (right - left) * 0.05)), np.float32)
    img *= (1 - 0.22 * shadow)[..., None]


def _accent(product: Floats, scene: ProductScene, width: int, height: int) -> Floats:
    """A ribbon round a box, a label round a bottle or mug: off-white, so it keeps the colour."""
    out = product.copy()
    cx, cy = int(scene.cx * width), int(scene.cy * height)
    obj_h = scene.height * height
    band = np.zeros((height, width), np.float32)
    paper = np.array((238, 232, 220), np.float32)
    if scene.shape == "box":
        thick = max(2, int(obj_h * 0.06))
        cv2.line(band, (cx, 0), (cx, height), (1.0,), thick)
    else:
        top = int(cy + obj_h * (0.05 if scene.shape == "bottle" else -0.1))
        half = int(obj_h * scene.aspect / 2)  # round the body only, not the handle
        cv2.rectangle(band, (cx - half, top), (cx + half, top + max(2, int(obj_h * 0.16))), (1.0,), -1)
    keep = band[..., None]
    shade = product / np.maximum(1.0, np.array(scene.color, np.float32))
    lit = paper * np.clip(shade.mean(axis=-1, keepdims=True), 0.6, 1.1)
    return np.asarray(out * (1 - keep) + lit * keep, np.float32)


def _turn_hue(color: Rgb, turns: float) -> Rgb:
    r, g, b = (c / 255 for c in color)
    hue, light, sat = colorsys.rgb_to_hls(r, g, b)
    nr, ng, nb = colorsys.hls_to_rgb((hue + turns) % 1.0, light, max(sat, 0.5))
    return (round(nr * 255), round(ng * 255), round(nb * 255))


def _room(img: Floats, scene: ProductScene, strength: float) -> Floats:
    """A busy backdrop: a patterned wall, shelves with things on them, a table edge."""
    rng = np.random.default_rng(scene.clutter_seed)
    h, w = img.shape[:2]
    out = img.copy()
    wall = np.array(rng.uniform(90, 220, 3), np.float32)
    out[:] = wall
    stripe = max(4, int(w * rng.uniform(0.03, 0.07)))
    xs = np.arange(w)
    dark = ((xs // stripe) % 2 == 0)[None, :, None]
    out = np.where(dark, out * (0.78 - 0.15 * strength), out)
    for _ in range(int(6 + 10 * strength)):
        color = tuple(float(c) for c in rng.uniform(20, 240, 3))
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.7))
        bw, bh = int(rng.uniform(0.04, 0.14) * w), int(rng.uniform(0.05, 0.2) * h)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, -1)
    shelf = int(h * rng.uniform(0.25, 0.4))
    cv2.rectangle(out, (0, shelf), (w, shelf + max(3, h // 40)), (70.0, 50.0, 35.0), -1)
    table = int(h * rng.uniform(0.72, 0.8))
    out[table:] = np.array(rng.uniform(60, 160, 3), np.float32)
    return np.asarray(cv2.GaussianBlur(out, (0, 0), sigmaX=0.8), np.float32)


def _watermark(img: Floats, scene: ProductScene, strength: float) -> Floats:
    """A stock-photo watermark across the frame and a credit line in a corner."""
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.float32)
    scale = w / 420 * (0.9 + 0.6 * strength)
    thick = max(2, round(scale * 2.2))
    (tw, th), _ = cv2.getTextSize(scene.text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    for row in (0.22, 0.8):
        cv2.putText(
            layer,
            scene.text,
            (max(2, (w - tw) // 2), int(h * row) + th // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (1.0,),
            thick,
            cv2.LINE_AA,
        )
    opacity = 0.55 + 0.35 * strength
    ink = np.array((60, 60, 64), np.float32)
    alpha = (layer * opacity)[..., None]
    return np.asarray(img * (1 - alpha) + ink * alpha, np.float32)
