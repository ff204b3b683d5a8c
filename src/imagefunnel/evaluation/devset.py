"""Generate a labelled development set from real photos: clean variants and independent defects.

Every licensed human photo (the market's portraits and the evaluation's own, see :mod:`.photos`)
gives several clean variants (see :mod:`.variants`) and, for every defect generator and strength,
one defective image made from a randomly chosen clean variant of it. The labels say which
dimensions should reject each image. The set is reproducible: each image's random draws are seeded
from (seed, photo, what is made), so a subset of photos or defects gives the very same files.

Defects come from :mod:`imagefunnel.evaluation.generators`, written apart from the detectors and
from the market's own defects (which shaped the detectors), with at least two implementations per
family; plus ``truncated``, the encoded bytes cut short. A face defect that finds no face in a
photo (the generators use Haar cascades, not the scorer's models) is listed in ``skipped``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefunnel.evaluation.generators import GENERATORS, TRUNCATED
from imagefunnel.evaluation.manifest import (
    MANIFEST_NAME,
    DevSetError,
    DevSetManifest,
    LabeledImage,
    SourcePhoto,
)
from imagefunnel.evaluation.photos import photos
from imagefunnel.evaluation.variants import CLEAN_VARIANTS, Rgb, Variant, encode_jpeg

__all__ = ["DEFAULT_STRENGTHS", "EXPECT", "GENERATOR", "DevSetConfig", "defect_names", "generate_devset"]

GENERATOR = "imagefunnel.evaluation.devset/2"
DEFAULT_STRENGTHS = (0.25, 0.5, 1.0)
FILE_QUALITY = 95  # what a generator delivers; encoding-specific variants keep their own bytes

# Which dimensions are meant to reject each defect. Names not registered where the set is evaluated
# are reported as "not scored" rather than counted as misses.
EXPECT: Mapping[str, tuple[str, ...]] = {
    **{name: g.expect for name, g in GENERATORS.items()},
    TRUNCATED: ("decodable",),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DevSetConfig:
    """What to generate. ``None`` means all: every human photo, every known defect."""

    seed: int = 0
    photos: tuple[str, ...] | None = None
    variants: tuple[str, ...] = tuple(CLEAN_VARIANTS)
    defects: tuple[str, ...] | None = None
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS


def defect_names() -> tuple[str, ...]:
    """Every defect the generator can inject: the independent generators and truncation."""
    return (*GENERATORS, TRUNCATED)


def _rng(seed: int, *key: object) -> np.random.Generator:
    # Stable across runs and subsets: the same (seed, key) always draws the same numbers.
    words = [zlib.crc32("/".join(map(str, key)).encode())]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _sources() -> list[SourcePhoto]:
    return [p.source for p in photos()]


def truncate(data: bytes, strength: float) -> bytes:
    """The encoded bytes cut short: 55 % of them kept at strength 0, 15 % at 1."""
    return data[: max(16, int(len(data) * (0.55 - 0.4 * strength)))]


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


def _variants(photo: str, rgb: Rgb, config: DevSetConfig, skipped: list[str]) -> dict[str, Variant]:
    out = {}
    for name in config.variants:
        try:
            out[name] = CLEAN_VARIANTS[name](rgb, _rng(config.seed, photo, name))
        except ValueError as exc:  # a variant placed by the face (tight crop) on a face not found
            skipped.append(f"{photo}--{name}.jpg: {exc}")
    return out


def _defective(
    photo: str, variants: dict[str, Variant], defect: str, strength: float, config: DevSetConfig
) -> tuple[str, bytes]:
    """One defective image (as file bytes) and the clean variant it was made from."""
    rng = _rng(config.seed, photo, defect, f"{strength:.3f}")
    base = str(rng.choice(sorted(variants)))
    rgb = variants[base].rgb
    if defect == TRUNCATED:
        return base, truncate(encode_jpeg(rgb, FILE_QUALITY), strength)
    return base, encode_jpeg(GENERATORS[defect].make(rgb, strength, rng), FILE_QUALITY)


def _write_licenses(out: Path, sources: Iterable[SourcePhoto]) -> None:
    lines = [
        "# Sources of the photos in this set",
        "",
        "| photo | person | source | license |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s.name} | {s.person} | {s.origin} | {s.license} |" for s in sources]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate_devset(out: Path, config: DevSetConfig = DevSetConfig()) -> DevSetManifest:
    """Write the images and ``labels.json`` into ``out`` (new or empty, or a previous dev set)."""
    _prepare(out)
    library = {p.source.name: p for p in photos()}
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
        variants = _variants(source.name, library[source.name].rgb, config, skipped)
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
    _write_licenses(out, sources)
    manifest = DevSetManifest(
        seed=config.seed, generator=GENERATOR, sources=sources, images=images, skipped=skipped
    )
    manifest.write(out)
    return manifest
