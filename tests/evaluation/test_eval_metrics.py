"""Metrics and calibration on known values, and on real scores of a small generated set."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import yaml

from imagefunnel.evaluation import (
    MANIFEST_NAME,
    DevSetConfig,
    DevSetError,
    LabeledImage,
    ScoredImage,
    calibrate,
    evaluate,
    generate_devset,
    load_manifest,
    score_devset,
    thresholds_yaml,
)
from imagefunnel.scoring import DimensionInfo, Direction, Scorer, default_registry

LOWER, HIGHER = Direction.LOWER_IS_BETTER, Direction.HIGHER_IS_BETTER
_NUMBERS = itertools.count()


def item(
    source: str, values: dict[str, float], defect: str | None = None, strength: float = 0.0, *expect: str
) -> ScoredImage:
    file = f"{source}-{defect}-{strength}-{next(_NUMBERS)}.jpg"
    return ScoredImage(
        LabeledImage(
            file=file, source=source, variant="as_is", defect=defect, strength=strength, expect=expect
        ),
        values,
    )


SCORED = [
    item("a", {"noise": 1.0, "sharpness": 0.3}),
    item("a", {"noise": 7.0, "sharpness": 0.3}),  # a clean image the noise threshold rejects
    item("b", {"noise": 2.0, "sharpness": 0.2}),
    item("b", {"noise": 2.5, "sharpness": 0.01}, "blur", 1.0, "sharpness"),
    item("b", {"noise": 3.0, "sharpness": 0.09}, "blur", 0.25, "sharpness"),  # mild: missed
    item("a", {"noise": 20.0, "sharpness": 0.02}, "noise", 1.0, "noise"),  # caught, by both
]
THRESHOLDS = {"noise": 6.0, "sharpness": 0.055}
DIRECTIONS = {"noise": LOWER, "sharpness": HIGHER}


def test_per_dimension_recall_false_rejects_and_precision() -> None:
    report = evaluate(SCORED, thresholds=THRESHOLDS, directions=DIRECTIONS)
    sharp, noise = report.stats("sharpness"), report.stats("noise")
    assert (sharp.positives, sharp.caught, sharp.recall) == (2, 1, 0.5)
    assert (sharp.hard_positives, sharp.hard_recall) == (1, 1.0)  # the 0.25 blur is not "hard"
    assert (sharp.clean, sharp.false_rejects, sharp.false_reject_rate) == (3, 0, 0.0)
    assert sharp.precision == 1.0  # it rejected the blur and the noisy image: both defective
    assert (noise.recall, noise.false_rejects) == (1.0, 1)
    assert noise.precision == 0.5  # one of its two rejections was a clean image
    assert report.clean_false_reject_rate == pytest.approx(1 / 3)


def test_confusion_strengths_and_false_rejects_per_source() -> None:
    report = evaluate(SCORED, thresholds=THRESHOLDS, directions=DIRECTIONS)
    assert report.confusion["noise"] == {"noise": 1, "sharpness": 1}
    assert report.confusion["clean"] == {"noise": 1}
    assert report.label_counts == {"clean": 3, "blur": 2, "noise": 1}
    assert report.caught_by_any == {"clean": 1, "blur": 1, "noise": 1}
    assert report.recall_by_strength["blur"] == {0.25: (1, 0), 1.0: (1, 1)}
    by_source = {s.source: s for s in report.per_source}
    assert by_source["a"].clean == 2 and by_source["a"].rejected == (("as_is", ("noise",)),)
    assert by_source["b"].rejected == ()


def test_expected_dimensions_not_scored_are_listed_not_counted() -> None:
    scored = [*SCORED, item("a", {"noise": 1.0}, "closed_eyes", 1.0, "eyes_open")]
    report = evaluate(scored, thresholds=THRESHOLDS, directions=DIRECTIONS)
    assert report.not_scored == ("eyes_open",)
    assert report.stats("sharpness").positives == 2


def info(name: str, direction: Direction, default: float, hi: float = 100.0) -> DimensionInfo:
    return DimensionInfo(
        name=name,
        tier=1,
        direction=direction,
        value_range=(0.0, hi),
        unit="test",
        default_threshold=default,
        cost=1.0,
        fail_label="test",
        description="test",
    )


def calibrated_set(clean: list[float], positives: list[float]) -> list[ScoredImage]:
    return [item("s", {"d": v}) for v in clean] + [item("s", {"d": v}, "x", 1.0, "d") for v in positives]


CLEAN = [float(v) for v in range(1, 21)]  # 20 clean images: 1 .. 20


def test_a_default_that_is_already_best_is_kept() -> None:
    (result,) = calibrate(
        calibrated_set(CLEAN, [40.0, 50.0]), infos={"d": info("d", LOWER, 30.0)}, max_false_reject=0.05
    )
    assert result.threshold == 30.0 and result.caught == 2 and result.false_rejects == 0


def test_a_too_strict_default_is_relaxed_to_the_budget() -> None:
    # Default 10 rejects 10/20 clean images (5 % of 20 would allow one); the nearest defect is at 30.
    (result,) = calibrate(
        calibrated_set(CLEAN, [30.0]), infos={"d": info("d", LOWER, 10.0)}, max_false_reject=0.05
    )
    assert result.default_false_rejects == 10
    assert result.threshold == pytest.approx(25.0)  # middle of the gap between clean 20 and defect 30
    assert result.false_rejects == 0 and result.caught == 1 and result.met


def test_a_too_lenient_default_is_tightened_to_catch_more() -> None:
    # Higher is better: defects at 0.5 and 0.8 sit below clean values 1 .. 20; default 0.6 misses one.
    (result,) = calibrate(
        calibrated_set(CLEAN, [0.5, 0.8]), infos={"d": info("d", HIGHER, 0.6)}, max_false_reject=0.0
    )
    assert result.default_caught == 1
    assert result.threshold == pytest.approx(0.9) and result.caught == 2 and result.false_rejects == 0


def test_without_defects_only_the_budget_moves_a_threshold() -> None:
    (kept,) = calibrate(calibrated_set(CLEAN, []), infos={"d": info("d", LOWER, 50.0)}, max_false_reject=0.05)
    (moved,) = calibrate(calibrated_set(CLEAN, []), infos={"d": info("d", LOWER, 5.0)}, max_false_reject=0.05)
    assert kept.threshold == 50.0 and moved.threshold == 19.0 and moved.false_rejects == 1


def test_not_a_number_uses_up_the_budget_and_an_impossible_budget_is_flagged() -> None:
    clean = [*CLEAN[:19], math.nan]
    (result,) = calibrate(
        calibrated_set(clean, []), infos={"d": info("d", LOWER, 5.0)}, max_false_reject=0.05
    )
    assert result.threshold == 19.0 and result.false_rejects == 1  # the NaN one
    (flagged,) = calibrate(
        calibrated_set(clean, []), infos={"d": info("d", LOWER, 5.0)}, max_false_reject=0.0
    )
    assert not flagged.met and flagged.threshold == 100.0
    assert "NOT MET" in thresholds_yaml([flagged], max_false_reject=0.0, origin="test")


def test_calibrated_yaml_is_a_valid_thresholds_block() -> None:
    result = calibrate(
        SCORED, infos={n: default_registry.get(n).info for n in THRESHOLDS}, max_false_reject=0.0
    )
    data = yaml.safe_load(thresholds_yaml(result, max_false_reject=0.0, origin="test"))
    assert set(data["thresholds"]) == {"noise", "sharpness"}
    scorer = Scorer(dimensions=["noise", "sharpness"], thresholds=data["thresholds"])
    assert scorer.thresholds["noise"] == pytest.approx(13.5)  # between the clean 7 and the noisy 20


# --- labels on disk and real scores ----------------------------------------------------------------


def test_malformed_labels_are_a_dev_set_error(tmp_path: Path) -> None:
    with pytest.raises(DevSetError, match="cannot read the labels"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DevSetError, match="not valid JSON"):
        load_manifest(tmp_path)
    bad = {
        "seed": 0,
        "generator": "x",
        "sources": [],
        "images": [{"file": "a.jpg", "source": "x", "variant": "v"}],
    }
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(bad))
    with pytest.raises(DevSetError, match="sources not in 'sources'"):
        load_manifest(tmp_path)
    bad["images"] = [{"file": "../etc/passwd", "source": "x", "variant": "v"}]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(bad))
    with pytest.raises(DevSetError, match=r"images\.0\.file"):
        load_manifest(tmp_path)
    with pytest.raises(ValueError, match="a clean image has no strength"):
        LabeledImage(file="a.jpg", source="x", variant="v", expect=("noise",))


def test_real_scores_of_a_small_set(tmp_path: Path) -> None:
    config = DevSetConfig(
        photos=("grace_hopper",),
        defects=("blur_gaussian", "noise_gaussian", "truncated", "caption"),
        strengths=(1.0,),
    )
    manifest = generate_devset(tmp_path, config)
    scorer = Scorer(score_all=True)  # tiers 1 and 3: fast, no faces
    scored = score_devset(tmp_path, manifest, scorer)
    report = evaluate(
        scored,
        thresholds=dict(scorer.thresholds),
        directions={d.name: d.direction for d in scorer.dimensions},
    )
    for name in ("sharpness", "noise", "decodable", "text_area"):
        assert report.stats(name).recall == 1.0, name
    assert report.clean_false_reject_rate == 0.0
    truncated = next(s for s in scored if s.label.defect == "truncated")
    assert truncated.values == {"decodable": 0.0}  # nothing else can be measured on it
