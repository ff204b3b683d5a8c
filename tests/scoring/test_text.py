"""Visible text and branding: OCR on real photos, with and without overlaid text, and its decision rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scoring_fixtures import PORTRAITS, Rgb, as_image, load_rgb

from imagefunnel.errors import SpecError
from imagefunnel.market import defects
from imagefunnel.scoring import Scorer, ScorerRegistry, default_registry
from imagefunnel.scoring.text import TextBox, TextPolicy, TextReader, read_boxes, register_text

TEXT = Scorer(dimensions=["text_area", "text_chars"], score_all=True)
ALL_PHOTOS = sorted(path.stem for path in PORTRAITS.glob("*.jpg"))


def box(text: str, score: float, x: float, y: float, w: float, h: float) -> TextBox:
    return TextBox(text, score, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def draw_text(rgb: Rgb, text: str, *, height: float, where: str, boxed: bool = False) -> Rgb:
    """``text`` in Pillow's bundled font, cap height about ``height`` of the image's side."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(6, round(height * img.height * 1.4)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x, y = {
        "corner": (img.width - w - 0.04 * img.width, img.height - h - 0.05 * img.height),
        "top": (0.05 * img.width, 0.05 * img.height),
        "center": ((img.width - w) / 2, img.height * 0.55),
    }[where]
    if boxed:  # a logo badge: dark plate, light letters
        draw.rectangle((x - 0.3 * h, y - 0.2 * h, x + w + 0.3 * h, y + 1.4 * h), fill=(20, 30, 90))
    draw.text((x - left, y - top), text, font=font, fill=(250, 250, 250) if boxed else (255, 255, 255))
    return np.asarray(img)


# --- decision logic on OCR's structured output --------------------------------------------------


def test_only_confident_legible_words_count() -> None:
    boxes = [
        box("ACME SALE", 0.97, 10, 10, 200, 30),  # counts: 8 letters
        box("O", 0.78, 50, 300, 40, 40),  # the false "O" on a plain photo: low score, one letter
        box("D", 0.94, 300, 100, 60, 95),  # one letter, however sure
        box("★★", 0.9, 400, 300, 60, 80),  # symbols are not text
        box("tiny", 0.95, 400, 450, 30, 4),  # below 1.2 % of the long side: not legible
        box("30", 0.94, 180, 200, 235, 148),  # a nose and mouth in a close-up: too tall for 2 digits
        box("HUGE", 0.9, 0, 300, 300, 90),  # a giant word still counts: 4 letters
        box("Getty", 0.79, 300, 400, 80, 20),  # just under the confidence cut
    ]
    reading = read_boxes(boxes, width=500, height=500)
    assert [b.text for b in reading.boxes] == ["ACME SALE", "HUGE"]
    assert reading.chars == 12
    assert reading.area == pytest.approx((201 * 31 + 301 * 91) / 250_000, rel=0.02)  # inclusive edges


def test_no_boxes_reads_as_zero_and_overlaps_count_once() -> None:
    assert read_boxes([], width=100, height=100).area == 0.0
    double = read_boxes([box("AB", 0.9, 0, 0, 49, 9), box("AB", 0.9, 0, 0, 49, 9)], width=100, height=100)
    assert double.area == pytest.approx(0.05) and double.chars == 4


def test_policy_is_configurable() -> None:
    boxes = [box("D", 0.94, 0, 0, 20, 30)]
    assert read_boxes(boxes, width=400, height=400).chars == 0
    assert read_boxes(boxes, width=400, height=400, policy=TextPolicy(min_chars=1)).chars == 1


def test_box_height_is_across_the_line_even_when_rotated() -> None:
    tilted = TextBox("AB", 0.9, ((0.0, 10.0), (100.0, 0.0), (102.0, 20.0), (2.0, 30.0)))
    assert tilted.height == pytest.approx(20.1, abs=0.1)


# --- the real OCR model on real photos ----------------------------------------------------------


def test_no_clean_portrait_is_rejected() -> None:
    for photo in ALL_PHOTOS:  # the dog too: fur and collars are not text
        verdict = TEXT.score(as_image(load_rgb(photo)))
        assert verdict.passed, f"{photo}: {verdict.reasons}"
        assert verdict.value("text_area") == 0.0 and verdict.value("text_chars") == 0.0


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper", "obama_3"])
def test_market_text_overlay_is_rejected(photo: str, strength: float, portraits: dict[str, Rgb]) -> None:
    verdict = TEXT.score(as_image(defects.text_overlay(portraits[photo], strength)))
    assert not verdict.passed
    assert verdict.failed[0].reason.endswith("(visible text or branding)")
    assert verdict.value("text_chars") >= 10  # "ACME SALE 50% OFF", give or take a misread letter


@pytest.mark.parametrize(
    ("text", "height", "where", "boxed"),
    [
        ("Getty Images", 0.022, "corner", False),  # a small watermark
        ("Studio Lumen", 0.035, "top", False),
        ("ACME", 0.05, "top", True),  # a logo badge
        ("LIMITED OFFER", 0.08, "center", False),  # a large slogan
    ],
)
@pytest.mark.parametrize("photo", ["biden", "jesper_2"])
def test_drawn_text_and_logos_of_several_sizes_are_rejected(
    photo: str, text: str, height: float, where: str, boxed: bool, portraits: dict[str, Rgb]
) -> None:
    verdict = TEXT.score(as_image(draw_text(portraits[photo], text, height=height, where=where, boxed=boxed)))
    assert not verdict.passed, f"{text!r} at {height:.1%} not seen"
    assert verdict.value("text_area") > 0.0


def test_text_on_the_full_cascade_fails_on_text(portraits: dict[str, Rgb]) -> None:
    photo = portraits["obama_1"]
    verdict = Scorer(score_all=True).score(as_image(defects.text_overlay(photo, 1.0)))
    failed = {s.name for s in verdict.failed}
    # The overlay is re-encoded as JPEG: its hard glyph edges may also read as blocking.
    assert "text_area" in failed and failed <= {"text_area", "text_chars", "blockiness"}
    assert Scorer(score_all=True).score(as_image(photo)).passed


# --- a missing model skips cleanly --------------------------------------------------------------


def test_missing_model_files_skip_the_dimensions_with_a_reason(
    tmp_path: Path, portraits: dict[str, Rgb]
) -> None:
    assert TextReader().unavailable() is None  # the installed package has its models
    registry = ScorerRegistry([default_registry.get("brightness")])
    register_text(registry, TextReader(model_dir=tmp_path))
    scorer = Scorer(registry=registry, dimensions=["brightness", "text_area", "text_chars"])
    assert set(scorer.unavailable) == {"text_area", "text_chars"}
    assert scorer.unavailable["text_area"].startswith(f"OCR model files missing in {tmp_path}")
    verdict = scorer.score(as_image(defects.text_overlay(portraits["biden"], 1.0)))
    assert verdict.passed and [s.name for s in verdict.scores] == ["brightness"]
    assert verdict.skipped == ("text_area", "text_chars")
    with pytest.raises(SpecError, match="no selected dimension can run here: OCR model files missing"):
        Scorer(registry=registry, dimensions=["text_area"])


@pytest.mark.parametrize("shape", [(1, 1, 3), (16, 4000, 3), (4000, 16, 3)])
def test_degenerate_shapes_read_no_text(shape: tuple[int, int, int]) -> None:
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert TEXT.score(as_image(noise)).value("text_area") == 0.0


def test_detector_input_by_lookup_is_the_librarys_own_bit_for_bit() -> None:
    # The detector's normalisation is replaced by a table made from the library's own; a different
    # float anywhere would move the boxes, so the two must agree exactly, whatever the size.
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    engine = TextReader()._load()
    rng = np.random.default_rng(0)
    for shape in ((512, 512, 3), (512, 300, 3), (200, 512, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        fast = engine.text_det.get_preprocess(max(shape[:2]))(img)  # type: ignore[attr-defined]
        library = DetPreProcess(960, "max", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])(img)
        assert fast.dtype == library.dtype and np.array_equal(fast, library), shape


def test_our_sessions_read_exactly_what_rapidocrs_own_read(portraits: dict[str, Rgb]) -> None:
    # The reader runs rapidocr's models in sessions of its own (memory arena on, for speed); the
    # boxes, texts and scores must be the very ones rapidocr's own sessions give.
    from rapidocr_onnxruntime import RapidOCR

    ours = TextReader()._load()
    stock = RapidOCR(det_limit_type="max", intra_op_num_threads=1, inter_op_num_threads=1)
    overlay = defects.text_overlay(portraits["obama_3"], 0.5)
    watermark = draw_text(portraits["biden"], "Getty Images", height=0.022, where="corner")
    for rgb in (overlay, watermark, portraits["jesper_2"]):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        assert ours(bgr)[0] == stock(bgr)[0]
    assert ours(np.ascontiguousarray(overlay[:, :, ::-1]))[0], "the overlay is read at all"
