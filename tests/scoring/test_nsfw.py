"""No NSFW: the detector's decision logic on structured output, and the real model on clean photos.

No positive (nude) test images exist offline and none may be fabricated: that the model fires on
nudity is NOT verified here. What is verified: clean portraits pass, the class filter and score cut
decide as documented, our decoding matches nudenet's own pipeline, and a missing model skips cleanly.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
from scoring_fixtures import PORTRAITS, Rgb, as_image, load_rgb

from imagefunnel.scoring import Scorer, ScorerRegistry, default_registry
from imagefunnel.scoring.nsfw import (
    EXPOSED,
    LABELS,
    Detection,
    NsfwDetector,
    decode_output,
    exposed_score,
    register_nsfw,
)

ALL_PHOTOS = sorted(path.stem for path in PORTRAITS.glob("*.jpg"))
INFO = default_registry.get("nsfw").info
# The model is optional (AGPL-3.0 licence files); `make install` installs it, so CI runs these.
needs_model = pytest.mark.skipif(
    NsfwDetector().unavailable() is not None, reason="nudenet model not installed"
)


def detection(label: str, score: float) -> Detection:
    return Detection(label, score, (0.0, 0.0, 10.0, 10.0))


def passes(detections: list[Detection]) -> bool:
    return INFO.direction.passes(exposed_score(detections), INFO.default_threshold)


# --- decision logic -------------------------------------------------------------------------------


def test_only_explicit_exposed_classes_count() -> None:
    harmless = [detection(label, 0.99) for label in LABELS if label not in EXPOSED]
    assert "FEET_EXPOSED" in {d.label for d in harmless} and "FACE_FEMALE" in {d.label for d in harmless}
    assert exposed_score(harmless) == 0.0 and passes(harmless)
    for label in sorted(EXPOSED):
        assert not passes([*harmless, detection(label, 0.62)]), label
        assert exposed_score([detection(label, 0.62), detection(label, 0.7)]) == 0.7


@pytest.mark.parametrize(
    ("score", "ok"), [(0.3, True), (0.49, True), (0.5, True), (0.51, False), (0.95, False)]
)
def test_score_cut_at_one_half(score: float, ok: bool) -> None:
    assert passes([detection("FEMALE_BREAST_EXPOSED", score)]) is ok
    assert passes([detection("FEMALE_BREAST_COVERED", score)])


def raw_output(rows: list[tuple[float, float, float, float, str, float]], anchors: int = 50) -> np.ndarray:
    """The model's (1, 4 + classes, anchors) output with the given boxes; all other anchors empty."""
    out = np.zeros((1, 4 + len(LABELS), anchors), dtype=np.float32)
    for i, (cx, cy, w, h, label, score) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + LABELS.index(label), i] = score
    return out


def test_decoding_filters_merges_and_scales_boxes() -> None:
    output = raw_output(
        [
            (100, 100, 40, 40, "MALE_GENITALIA_EXPOSED", 0.8),
            (101, 100, 40, 40, "MALE_GENITALIA_EXPOSED", 0.6),  # the same thing again: merged by NMS
            (200, 50, 20, 20, "FACE_MALE", 0.9),
            (20, 20, 10, 10, "ANUS_EXPOSED", 0.15),  # below the detector's floor
        ]
    )
    found = decode_output(output, scale=2.0)
    assert sorted((d.label, round(d.score, 2)) for d in found) == [
        ("FACE_MALE", 0.9),
        ("MALE_GENITALIA_EXPOSED", 0.8),
    ]
    exposed = next(d for d in found if d.label == "MALE_GENITALIA_EXPOSED")
    assert exposed.box == pytest.approx((160.0, 160.0, 80.0, 80.0))
    assert exposed_score(found) == pytest.approx(0.8)


def test_the_decision_sees_exposed_parts_that_nms_would_hide() -> None:
    # An exposed part overlapping a surer face box: merged away by NMS, kept for the decision.
    output = raw_output([(100, 100, 60, 60, "FACE_FEMALE", 0.9), (105, 100, 60, 60, "BUTTOCKS_EXPOSED", 0.7)])
    assert [d.label for d in decode_output(output, scale=1.0)] == ["FACE_FEMALE"]
    assert exposed_score(decode_output(output, scale=1.0, nms=False)) == pytest.approx(0.7)


def test_each_anchor_votes_for_its_best_class_only() -> None:
    out = raw_output([(50, 50, 20, 20, "FACE_FEMALE", 0.9)])
    out[0, 4 + LABELS.index("FEMALE_BREAST_EXPOSED"), 0] = 0.6  # same anchor, second-best class
    assert [d.label for d in decode_output(out, scale=1.0)] == ["FACE_FEMALE"]


# --- the real model on real photos -------------------------------------------------------------


@needs_model
def test_every_clean_portrait_passes() -> None:
    scorer = Scorer(dimensions=["nsfw"])
    assert scorer.unavailable == {}
    for photo in ALL_PHOTOS:
        verdict = scorer.score(as_image(load_rgb(photo)))
        assert verdict.passed, f"{photo}: {verdict.reasons}"
        assert verdict.value("nsfw") < 0.3


@needs_model
def test_model_finds_the_face_it_was_trained_to_find(portraits: dict[str, Rgb]) -> None:
    faces = [d for d in NsfwDetector().detect(portraits["obama_1"]) if d.label.startswith("FACE_")]
    assert faces and max(d.score for d in faces) > 0.7  # the model runs and sees the obvious


@pytest.mark.skipif(importlib.util.find_spec("nudenet") is None, reason="nudenet is not installed")
def test_matches_nudenets_own_pipeline(portraits: dict[str, Rgb]) -> None:
    from nudenet import NudeDetector  # reference only: the scorer itself never imports nudenet

    reference = NudeDetector()
    for photo in ("grace_hopper", "obama_2", "jesper_3"):
        rgb = portraits[photo]
        ours = sorted((d.label, round(d.score, 3)) for d in NsfwDetector().detect(rgb))
        theirs = sorted((d["class"], round(d["score"], 3)) for d in reference.detect(rgb[:, :, ::-1].copy()))
        assert ours == theirs, photo


# --- a missing model skips cleanly --------------------------------------------------------------


def test_missing_model_file_skips_with_a_clear_message(
    tmp_path: Path, portraits: dict[str, Rgb], caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "320n.onnx"
    registry = ScorerRegistry([default_registry.get("brightness")])
    register_nsfw(registry, NsfwDetector(model_path=missing))
    with caplog.at_level(logging.WARNING, logger="imagefunnel.scoring.engine"):
        scorer = Scorer(registry=registry, dimensions=["brightness", "nsfw"])
    assert scorer.unavailable == {"nsfw": f"NSFW model file not found: {missing}"}
    assert f"dimension nsfw is skipped: NSFW model file not found: {missing}" in caplog.text
    verdict = scorer.score(as_image(portraits["biden"]))
    assert verdict.passed and verdict.skipped == ("nsfw",)
    assert verdict.get("nsfw") is None  # skipped, never a made-up score
