"""Generate a labelled development set from the real portraits: clean variants and injected defects.

Every human portrait of the market's assets gives several clean variants (see :mod:`.variants`) and,
for every known defect and strength, one defective image made from a randomly chosen clean variant
of it. The labels say which dimensions should reject each image. The set is reproducible: each
image's random draws are seeded from (seed, photo, what is made), so a subset of photos or defects
gives the very same files as the full set.

Defects come from :mod:`imagefunnel.market.defects` (every member of its ``Defect`` enum: pixel,
face and truncation of the encoded bytes), the two face edits of :mod:`imagefunnel.market.face_defects`
the market does not inject (closed eyes, a lopsided mouth), and two text defects of this module drawn
in Pillow's bundled font: a small semi-transparent corner watermark and a logo badge. A face defect
that finds no face in a photo is listed in the labels' ``skipped``.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imagefunnel.evaluation.manifest import (
    MANIFEST_NAME,
    DevSetError,
    DevSetManifest,
    LabeledImage,
    SourcePhoto,
)
from imagefunnel.evaluation.variants import CLEAN_VARIANTS, Rgb, Variant, encode_jpeg
from imagefunnel.market import face_defects
from imagefunnel.market.defects import FACE_DEFECTS, PIXEL_DEFECTS, Defect, apply_pixel_defect, truncate
from imagefunnel.market.images import AssetLibrary

__all__ = ["DEFAULT_STRENGTHS", "EXPECT", "GENERATOR", "DevSetConfig", "defect_names", "generate_devset"]

GENERATOR = "imagefunnel.evaluation.devset/1"
DEFAULT_STRENGTHS = (0.25, 0.5, 1.0)
MIN_TEXT_PX = 8.0  # cap height of injected text, whatever the image size
FILE_QUALITY = 95  # what a generator delivers; encoding-specific variants keep their own bytes

_TEXT = ("text_area", "text_chars")
# Which dimensions are meant to reject each defect. Names not registered where the set is evaluated
# are reported as "not scored" rather than counted as misses.
EXPECT: Mapping[str, tuple[str, ...]] = {
    "blur": ("sharpness",),
    "noise": ("noise",),
    "overexposed": ("highlight_clipping",),
    "underexposed": ("brightness",),
    "jpeg_blocking": ("blockiness",),
    "color_cast": ("color_cast",),
    "text_overlay": _TEXT,
    "watermark": _TEXT,
    "logo": _TEXT,
    "face_cropped_out": ("face_detected",),
    "blank": ("uniformity",),
    "black": ("uniformity", "brightness"),
    "truncated": ("decodable",),
    "extra_face": ("face_count",),
    "closed_eyes": ("eyes_open",),
    "harsh_shadow": ("face_shadow",),
    "skin_tone_shift": ("skin_tone_stops", "skin_tone_delta_e"),
    "lopsided_mouth": ("expression_asymmetry",),
    "face_cut": ("face_margin",),
    "small_face": ("face_size",),
    "cluttered_background": ("background_clutter",),
}

_DefectFn = Callable[[Rgb, float, np.random.Generator], Rgb]


@dataclass(frozen=True, slots=True, kw_only=True)
class DevSetConfig:
    """What to generate. ``None`` means all: every human portrait, every known defect."""

    seed: int = 0
    photos: tuple[str, ...] | None = None
    variants: tuple[str, ...] = tuple(CLEAN_VARIANTS)
    defects: tuple[str, ...] | None = None
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS


def _draw_text(rgb: Rgb, text: str, *, height: float, corner: bool, alpha: int, badge: bool) -> Rgb:
    img = Image.fromarray(rgb).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # Letters at least MIN_TEXT_PX high: smaller text is not legible, so it is not visible branding.
    font = ImageFont.load_default(size=round(max(height * img.height, MIN_TEXT_PX) * 1.4))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    margin = 0.05 * min(img.size)
    x, y = (img.width - w - margin, img.height - h - margin) if corner else (margin, margin)
    if badge:
        draw.rectangle((x - 0.4 * h, y - 0.3 * h, x + w + 0.4 * h, y + 1.3 * h), fill=(25, 35, 110, alpha))
    draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, alpha))
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


def watermark(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A stock-photo watermark: small (1.6-3 % of the height), semi-transparent, in a corner.
    name = str(rng.choice(["Getty Images", "shutterstock", "Studio Lumen", "© PhotoCo"]))
    return _draw_text(rgb, name, height=0.016 + 0.014 * strength, corner=True, alpha=190, badge=False)


def logo(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A brand badge at the top: 3-6 % of the height.
    name = str(rng.choice(["ACME", "NOVA", "ZENITH", "Bolt Co"]))
    return _draw_text(rgb, name, height=0.03 + 0.03 * strength, corner=False, alpha=255, badge=True)


def _market_defect(defect: Defect) -> _DefectFn:
    def inject(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
        return apply_pixel_defect(rgb, defect, strength)

    return inject


def _face_defect(fn: Callable[[Rgb, float], Rgb]) -> _DefectFn:
    def inject(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
        return fn(rgb, strength)

    return inject


def _catalogue() -> dict[str, _DefectFn]:
    market = {d.value: _market_defect(d) for d in Defect if d in PIXEL_DEFECTS or d in FACE_DEFECTS}
    # Face edits the market does not inject (too few pixels change for its contract), but a
    # headshot scorer must still catch.
    faces = {"closed_eyes": face_defects.closed_eyes, "lopsided_mouth": face_defects.lopsided_mouth}
    return {
        **market,
        **{name: _face_defect(fn) for name, fn in faces.items()},
        "watermark": watermark,
        "logo": logo,
    }


def defect_names() -> tuple[str, ...]:
    """Every defect the generator can inject: the market's (truncation included) and the text ones."""
    return (*_catalogue(), Defect.TRUNCATED.value)


def _rng(seed: int, *key: object) -> np.random.Generator:
    # Stable across runs and subsets: the same (seed, key) always draws the same numbers.
    words = [zlib.crc32("/".join(map(str, key)).encode())]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _sources() -> list[SourcePhoto]:
    folder = resources.files("imagefunnel.market") / "assets" / "portraits"
    rows = {}
    for line in (folder / "LICENSES.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".jpg"):
            rows[cells[0].removesuffix(".jpg")] = cells
    library = AssetLibrary()
    return [
        SourcePhoto(name=stem, person=rows[stem][1], origin=rows[stem][2].strip("`"), license=rows[stem][3])
        for stem in (name.removesuffix(".jpg") for name in library.names)
        if stem in rows
    ]


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise DevSetError(f"{out} is not empty and holds no dev set: choose a new folder")
    out.mkdir(parents=True, exist_ok=True)


def _selected(requested: Iterable[str] | None, known: Iterable[str], what: str) -> list[str]:
    known = list(known)
    if requested is None:
        return known
    unknown = sorted(set(requested) - set(known))
    if unknown:
        raise DevSetError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [name for name in known if name in set(requested)]


@dataclass(frozen=True, slots=True)
class _Writer:
    out: Path

    def image(self, name: str, rgb: Rgb, *, jpeg: bytes | None = None) -> str:
        (self.out / name).write_bytes(jpeg if jpeg is not None else encode_jpeg(rgb, FILE_QUALITY))
        return name


def _variants(photo: str, rgb: Rgb, config: DevSetConfig) -> dict[str, Variant]:
    return {name: CLEAN_VARIANTS[name](rgb, _rng(config.seed, photo, name)) for name in config.variants}


def _defective(
    photo: str, variants: dict[str, Variant], defect: str, strength: float, config: DevSetConfig
) -> tuple[str, bytes]:
    """One defective image (as file bytes) and the clean variant it was made from."""
    rng = _rng(config.seed, photo, defect, f"{strength:.3f}")
    base = str(rng.choice(sorted(variants)))
    rgb = variants[base].rgb
    if defect == Defect.TRUNCATED.value:
        return base, truncate(encode_jpeg(rgb, FILE_QUALITY), strength)
    return base, encode_jpeg(_catalogue()[defect](rgb, strength, rng), FILE_QUALITY)


def generate_devset(out: Path, config: DevSetConfig = DevSetConfig()) -> DevSetManifest:
    """Write the images and ``labels.json`` into ``out`` (new or empty, or a previous dev set)."""
    _prepare(out)
    library = AssetLibrary()
    sources = [
        s for s in _sources() if s.name in _selected(config.photos, [s.name for s in _sources()], "photos")
    ]
    _selected(config.variants, CLEAN_VARIANTS, "variants")
    defects = _selected(config.defects, defect_names(), "defects")
    if not config.variants or not all(0.0 < s <= 1.0 for s in config.strengths):
        raise DevSetError("need at least one clean variant, and strengths in (0, 1]")
    writer = _Writer(out)
    images: list[LabeledImage] = []
    skipped: list[str] = []
    for source in sources:
        variants = _variants(source.name, library.image(f"{source.name}.jpg"), config)
        for name, variant in variants.items():
            file = writer.image(f"{source.name}--{name}.jpg", variant.rgb, jpeg=variant.jpeg or None)
            images.append(LabeledImage(file=file, source=source.name, variant=name))
        for defect in defects:
            for strength in config.strengths:
                file = f"{source.name}--{defect}-{strength:.2f}.jpg"
                try:
                    base, data = _defective(source.name, variants, defect, strength, config)
                except ValueError as exc:  # e.g. a face defect on a photo whose face is not found
                    skipped.append(f"{file}: {exc}")
                    continue
                (out / file).write_bytes(data)
                images.append(
                    LabeledImage(
                        file=file,
                        source=source.name,
                        variant=base,
                        defect=defect,
                        strength=strength,
                        expect=EXPECT.get(defect, ()),
                    )
                )
    licenses = resources.files("imagefunnel.market") / "assets" / "portraits" / "LICENSES.md"
    with resources.as_file(licenses) as path:
        shutil.copyfile(path, out / "LICENSES.md")
    manifest = DevSetManifest(
        seed=config.seed, generator=GENERATOR, sources=sources, images=images, skipped=skipped
    )
    manifest.write(out)
    return manifest
