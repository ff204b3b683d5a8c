"""The development-set generator: reproducible, labelled, licensed, from the real portraits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagefunnel.errors import ImageError
from imagefunnel.evaluation import (
    EXPECT,
    DevSetConfig,
    DevSetError,
    defect_names,
    generate_devset,
    load_manifest,
)
from imagefunnel.evaluation.generators import GENERATORS
from imagefunnel.evaluation.variants import CLEAN_VARIANTS
from imagefunnel.imaging import decode_image
from imagefunnel.market.defects import Defect

SMALL = DevSetConfig(seed=3, photos=("luispedro", "obama_2"), strengths=(1.0,))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("devset")
    generate_devset(folder, SMALL)
    return folder


def test_every_source_variant_defect_and_strength_is_labelled(small_set: Path) -> None:
    manifest = load_manifest(small_set)
    assert [s.name for s in manifest.sources] == ["luispedro", "obama_2"]
    clean = [i for i in manifest.images if i.clean]
    defective = [i for i in manifest.images if not i.clean]
    # A variant placed by the face or the backdrop (tight crop, patterned wall) may not apply to a
    # photo; every one that does not is listed in ``skipped``, as are defects that need a face.
    skipped_variants = [s for s in manifest.skipped if s.split(".jpg")[0].split("--")[1] in CLEAN_VARIANTS]
    assert len(clean) + len(skipped_variants) == 2 * len(CLEAN_VARIANTS)
    assert len(defective) + len(manifest.skipped) - len(skipped_variants) == 2 * len(defect_names())
    assert {i.defect for i in defective} == set(defect_names())
    assert {i.strength for i in defective} == {1.0}
    for image in defective:
        assert image.expect == EXPECT[image.defect]  # type: ignore[index]
        assert image.variant in CLEAN_VARIANTS  # made from one of the clean variants
    assert all((small_set / i.file).is_file() for i in manifest.images)


def test_defects_are_the_independent_generators_and_none_of_the_market() -> None:
    names = set(defect_names())
    assert names == {*GENERATORS, "truncated"}
    assert not names & ({d.value for d in Defect} - {"truncated"})  # never graded by the detectors' twins
    assert {"watermark", "logo", "caption", "eyes_painted", "pixel_mosaic", "cast_wb_gain"} <= names


def test_sources_carry_their_licences(small_set: Path) -> None:
    manifest = load_manifest(small_set)
    luis = next(s for s in manifest.sources if s.name == "luispedro")
    assert luis.license == "MIT" and "mahotas" in luis.origin
    assert "public domain" in next(s for s in manifest.sources if s.name == "obama_2").license
    assert "| luispedro | Luis Pedro Coelho |" in (small_set / "LICENSES.md").read_text()


def test_images_decode_except_the_truncated_ones(small_set: Path) -> None:
    for image in load_manifest(small_set).images:
        data = (small_set / image.file).read_bytes()
        if image.defect == "truncated":
            with pytest.raises(ImageError):
                decode_image(data)
        else:
            assert decode_image(data).width >= 16


def test_clean_variants_differ_from_the_source_and_from_each_other(small_set: Path) -> None:
    pixels = {
        i.variant: decode_image((small_set / i.file).read_bytes()).rgb
        for i in load_manifest(small_set).images
        if i.clean and i.source == "obama_2"
    }
    base = pixels.pop("as_is").astype(np.int16)
    for name, rgb in pixels.items():
        same_shape = rgb.shape == base.shape
        if same_shape:  # a local change (a patterned wall behind) counts when it covers 1 % of the frame
            diff = np.abs(rgb.astype(np.int16) - base)
            assert diff.mean() > 0.5 or (diff.max(axis=2) > 4).mean() > 0.01, name


def test_same_seed_same_files_and_subsets_agree(small_set: Path, tmp_path: Path) -> None:
    generate_devset(
        tmp_path,
        DevSetConfig(seed=3, photos=("obama_2",), defects=("blur_motion", "watermark"), strengths=(1.0,)),
    )
    for name in ("obama_2--soft.jpg", "obama_2--blur_motion-1.00.jpg", "obama_2--watermark-1.00.jpg"):
        assert (tmp_path / name).read_bytes() == (small_set / name).read_bytes(), name


def test_another_seed_draws_other_variants(small_set: Path, tmp_path: Path) -> None:
    generate_devset(
        tmp_path, DevSetConfig(seed=4, photos=("obama_2",), defects=("blur_motion",), strengths=(1.0,))
    )
    assert (tmp_path / "obama_2--crop.jpg").read_bytes() != (small_set / "obama_2--crop.jpg").read_bytes()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DevSetConfig(photos=("lena",)), "unknown photos: lena"),
        (DevSetConfig(defects=("blurr",)), "unknown defects: blurr"),
        (DevSetConfig(variants=("as_is", "tilted")), "unknown variants: tilted"),
        (DevSetConfig(strengths=(0.0,)), "strengths in"),
    ],
)
def test_bad_configuration_is_refused(config: DevSetConfig, message: str, tmp_path: Path) -> None:
    with pytest.raises(DevSetError, match=message):
        generate_devset(tmp_path / "new", config)


def test_refuses_to_write_into_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DevSetError, match="not empty"):
        generate_devset(tmp_path, SMALL)
