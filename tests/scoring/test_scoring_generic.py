"""Tier-1 dimensions on real photos: clean passes, the targeted defect fails (both asserted)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scoring_fixtures import HUMANS, Rgb, as_image

from imagefunnel.market import defects
from imagefunnel.market.defects import Defect
from imagefunnel.scoring import ImageFeatures, ScoringContext, default_registry, generic

# Each tier-1 dimension and the market defect it exists to catch. Colour cast and pixelation are
# tested in test_detail_color.py (with the independent generators: the market has no pixelation,
# and its additive cast is a job for the reference-relative color_shift).
TARGETS = {
    "sharpness": Defect.BLUR,
    "noise": Defect.NOISE,
    "blockiness": Defect.JPEG_BLOCKING,
    "brightness": Defect.UNDEREXPOSED,
    "highlight_clipping": Defect.OVEREXPOSED,
    "uniformity": Defect.BLANK,
}
TESTED_ELSEWHERE = {"decodable", "color_cast", "pixelation"}


def measure(name: str, rgb: Rgb) -> tuple[float, bool]:
    dim = default_registry.get(name)
    value = dim.measure(ImageFeatures(as_image(rgb)), ScoringContext())
    return value, dim.info.direction.passes(value, dim.info.default_threshold)


def _built_in_tier1() -> list[str]:
    """Tier-1 dimensions that always run (optional extras such as CLIP alignment have own tests)."""
    return [n for n in default_registry.names(tier=1) if not default_registry.get(n).info.optional]


def test_every_tier1_dimension_has_a_targeted_defect() -> None:
    assert set(_built_in_tier1()) == {*TARGETS, *TESTED_ELSEWHERE}


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("photo", HUMANS)
def test_clean_photo_passes_and_targeted_defect_fails(
    name: str, photo: str, portraits: dict[str, Rgb]
) -> None:
    rgb = portraits[photo]
    value, passed = measure(name, rgb)
    assert passed, f"clean {photo}: {name} = {value:.3f} rejected"
    for strength in (0.5, 1.0):
        broken = defects.apply_pixel_defect(rgb, TARGETS[name], strength)
        value, passed = measure(name, broken)
        assert not passed, f"{photo} with {TARGETS[name]}@{strength}: {name} = {value:.3f} accepted"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mild_variants_of_clean_photos_pass(name: str, clean_variants: dict[str, dict[str, Rgb]]) -> None:
    for photo, variants in clean_variants.items():
        for variant, rgb in variants.items():
            if name == "sharpness" and max(rgb.shape[:2]) < 128:
                continue  # a 95 px thumbnail (half of the 190 px photo) is judged as shown large: soft
            value, passed = measure(name, rgb)
            assert passed, f"{photo} ({variant}): {name} = {value:.3f} rejected"


def test_black_frame_fails_brightness_and_uniformity(portraits: dict[str, Rgb]) -> None:
    black = defects.black(portraits["obama_1"])
    assert not measure("brightness", black)[1]
    assert not measure("uniformity", black)[1]


# Golden values on synthetic images: the measures mean what their descriptions say.


def test_noise_estimates_the_standard_deviation_of_added_gaussian_noise() -> None:
    rng = np.random.default_rng(7)
    ramp = np.tile(np.linspace(60, 190, 256, dtype=np.float32), (256, 1))
    for sigma in (0.0, 5.0, 10.0):
        noisy = np.clip(ramp + rng.normal(0, sigma, ramp.shape), 0, 255).astype(np.uint8)
        value, _ = measure("noise", np.repeat(noisy[:, :, None], 3, axis=2))
        # Rounding to uint8 adds about 0.3 levels of its own.
        assert value == pytest.approx(sigma, abs=0.2 + 0.1 * sigma)


def test_brightness_is_the_95th_percentile_of_luma() -> None:
    rgb = np.full((100, 100, 3), 40, np.uint8)
    rgb[:10] = 200  # the brightest 10% of rows
    assert measure("brightness", rgb)[0] == 200.0
    rgb[:] = 40
    rgb[:4] = 200  # only 4%: below the 95th percentile
    assert measure("brightness", rgb)[0] == 40.0


def test_highlight_clipping_counts_only_the_central_oval() -> None:
    rgb = np.full((100, 100, 3), 128, np.uint8)
    rgb[:30] = 255  # white band at the top edge: outside the oval
    rgb[:, :30] = 255  # and a bright wall down the left side
    rgb[25:32, 25:32] = 255  # a corner of the central half, beside the head: outside the oval
    assert measure("highlight_clipping", rgb)[0] == 0.0
    rgb[:50] = 255  # the top half of the frame blown: the top half of the oval
    assert measure("highlight_clipping", rgb)[0] == pytest.approx(0.5, abs=0.01)
    assert measure("highlight_clipping", np.full((100, 100, 3), 255, np.uint8))[0] == 1.0


def test_highlight_clipping_ignores_a_bright_background_beside_a_real_face(
    portraits: dict[str, Rgb],
) -> None:
    # A real portrait against a wall blown out right up to the head passes; the face blown fails.
    rgb = portraits["biden"].copy()
    w = rgb.shape[1]
    rgb[:, : int(0.32 * w)] = 255
    rgb[:, int(0.68 * w) :] = 255
    assert measure("highlight_clipping", rgb)[1]
    assert not measure(
        "highlight_clipping", defects.apply_pixel_defect(portraits["biden"], Defect.OVEREXPOSED, 0.5)
    )[1]


def test_uniformity_of_blank_and_two_tone_images() -> None:
    assert measure("uniformity", np.full((64, 64, 3), 90, np.uint8))[0] == 1.0
    two_tone = np.full((64, 64, 3), 30, np.uint8)
    two_tone[:, 32:] = 220
    assert measure("uniformity", two_tone)[0] == pytest.approx(0.5)


def test_sharpness_drops_with_blur_and_ignores_contrast() -> None:
    rng = np.random.default_rng(3)
    texture = cv2.resize(
        rng.integers(0, 256, (64, 64), dtype=np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST
    )
    rgb = np.repeat(texture[:, :, None], 3, axis=2)
    crisp = measure("sharpness", rgb)[0]
    faint = measure("sharpness", (rgb // 4 + 100).astype(np.uint8))[0]
    blurred = measure("sharpness", np.asarray(cv2.GaussianBlur(rgb, (0, 0), 4), np.uint8))[0]
    assert faint == pytest.approx(crisp, rel=0.1)  # same detail at a quarter of the contrast
    assert blurred < crisp / 10
    assert measure("sharpness", np.full((64, 64, 3), 128, np.uint8))[0] == 0.0


def test_blockiness_is_high_only_for_a_block_grid() -> None:
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.float32), (256, 1)).astype(np.uint8)
    smooth = np.repeat(ramp[:, :, None], 3, axis=2)
    assert measure("blockiness", smooth)[0] == pytest.approx(1.0, abs=0.3)
    # 8x8 blocks each of one level, as a JPEG at quality 1 would produce.
    blocks = cv2.resize(ramp[::8, ::8], (256, 256), interpolation=cv2.INTER_NEAREST)
    assert measure("blockiness", np.repeat(blocks[:, :, None], 3, axis=2))[0] > 5.0
    shifted = np.repeat(blocks[3:, 5:, None], 3, axis=2)  # a crop moves the grid phase
    assert measure("blockiness", shifted)[0] > 5.0


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (16, 9, 3)])
def test_tiny_images_give_finite_values(shape: tuple[int, int, int]) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for name in _built_in_tier1():
        assert math.isfinite(measure(name, rgb)[0]), name


def test_decodable_measure_is_one_for_any_decoded_image() -> None:
    assert generic.decodable(ImageFeatures(as_image(np.zeros((4, 4, 3), np.uint8)))) == 1.0
