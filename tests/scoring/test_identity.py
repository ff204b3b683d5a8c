"""Identity against reference photos (dlib descriptors), and the headshot Scorer end to end."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from scoring_fixtures import HUMANS, PORTRAITS, Rgb, as_image

from imagefunnel.errors import SpecError
from imagefunnel.market import face_defects
from imagefunnel.scoring import ImageFeatures, Scorer, ScoringContext
from imagefunnel.scoring.faces import FaceModels, fit_for_analysis
from imagefunnel.scoring.identity import (
    check_references,
    descriptor,
    identity_distance,
    load_references,
    model_dir,
)

SAME_PERSON = {frozenset(p) for p in (("obama_1", "obama_2"), ("obama_1", "obama_3"), ("obama_2", "obama_3"))}
SAME_PERSON.add(frozenset(("jesper_2", "jesper_3")))
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


@pytest.fixture(scope="module")
def distances(portraits: dict[str, Rgb], models: FaceModels) -> dict[frozenset[str], float]:
    """dlib L2 distance of every pair of portraits (36 pairs, 9 descriptors)."""
    analyses = {p: models.reference(as_image(portraits[p])) for p in HUMANS}
    return {
        frozenset((a, b)): identity_distance(analyses[a], (as_image(portraits[b]),))
        for a, b in itertools.combinations(HUMANS, 2)
    }


def test_weights_ship_in_the_installed_package() -> None:
    folder = model_dir()
    assert (folder / "shape_predictor_5_face_landmarks.dat").is_file()
    assert (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file()


def test_same_person_is_near_and_different_people_are_far(distances: dict[frozenset[str], float]) -> None:
    same = {pair: d for pair, d in distances.items() if pair in SAME_PERSON}
    different = {pair: d for pair, d in distances.items() if pair not in SAME_PERSON}
    assert len(same) == 4 and len(different) == 32
    assert max(same.values()) < THRESHOLD < min(different.values()), (same, min(different.values()))


def test_descriptor_is_128_numbers_and_computed_once(portraits: dict[str, Rgb], models: FaceModels) -> None:
    analysis = models.reference(as_image(portraits["biden"]))
    first = descriptor(analysis)
    assert first is not None and first.shape == (128,)
    assert descriptor(models.reference(as_image(portraits["biden"]))) is first
    assert descriptor(models.analyse(fit_for_analysis(portraits["dog_donna"]))) is None


def test_identity_dimension_uses_the_nearest_reference(portraits: dict[str, Rgb], models: FaceModels) -> None:
    def value(photo: str, *refs: str) -> float:
        context = ScoringContext(references=tuple(as_image(portraits[r]) for r in refs))
        return identity_distance(models.analyse(fit_for_analysis(portraits[photo])), context.references)

    assert value("obama_1", "obama_2", "obama_3") < THRESHOLD
    assert value("obama_1", "biden") > THRESHOLD
    assert value("obama_1", "biden", "obama_3") == pytest.approx(value("obama_1", "obama_3"))
    assert math.isnan(value("dog_donna", "obama_1"))


def test_a_reference_without_a_face_is_a_spec_error(portraits: dict[str, Rgb], models: FaceModels) -> None:
    check_references(models, (as_image(portraits["obama_1"]),))
    with pytest.raises(SpecError, match="reference photo 2 has no detectable face") as err:
        check_references(models, (as_image(portraits["obama_1"]), as_image(portraits["dog_donna"])))
    assert err.value.field == "references[1]"


def test_reference_files_are_decoded_once_with_clear_errors(tmp_path: Path) -> None:
    images = load_references([PORTRAITS / "obama_1.jpg", PORTRAITS / "obama_2.jpg"])
    assert [img.format for img in images] == ["JPEG", "JPEG"]
    bad = tmp_path / "ref.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(SpecError) as err:
        load_references([PORTRAITS / "obama_1.jpg", bad])
    assert err.value.field == "references[1]"
    with pytest.raises(SpecError, match="cannot read"):
        load_references([tmp_path / "missing.jpg"])


# The Scorer with use_case="headshot": tier 1, the headshot tier, tier 3, cheapest first.


def test_headshot_scorer_passes_the_person_and_rejects_someone_else(portraits: dict[str, Rgb]) -> None:
    refs = ScoringContext(references=(as_image(portraits["obama_1"]), as_image(portraits["obama_2"])))
    scorer = Scorer(use_case="headshot", context=refs)
    verdict = scorer.score(as_image(portraits["obama_3"]))
    assert verdict.passed, verdict.reasons
    assert verdict.value("identity") < THRESHOLD and verdict.get("skin_tone_stops") is not None
    other = scorer.score(as_image(portraits["biden"]))
    assert not other.passed
    assert any(r.startswith("identity ") and "(not the person" in r for r in other.reasons)


def test_headshot_scorer_rejects_early_and_names_the_dimension(portraits: dict[str, Rgb]) -> None:
    scorer = Scorer(use_case="headshot")
    names = [d.name for d in scorer.dimensions]
    assert names.index("sharpness") < names.index("face_detected") < names.index("eyes_open")
    assert names.index("background_clutter") < names.index("identity")
    doubled = scorer.score(as_image(face_defects.extra_face(portraits["jesper_2"], 1.0)))
    assert doubled.reasons == ("face_count 2 > 1 (extra face or face parts)",)
    assert "eyes_open" in doubled.skipped
    dog = scorer.score(as_image(portraits["dog_donna"]))
    assert [s.name for s in dog.failed] == ["face_detected"]


def test_without_references_identity_is_skipped_with_a_reason(portraits: dict[str, Rgb]) -> None:
    scorer = Scorer(use_case="headshot", score_all=True)
    verdict = scorer.score(as_image(portraits["obama_1"]))
    assert verdict.passed
    assert {"identity", "skin_tone_stops", "skin_tone_delta_e"} <= set(verdict.skipped)
    assert scorer.skip_reason("identity") == "the job has no reference photos to compare with"
    assert scorer.skip_reason("eyes_open") == "an earlier dimension already failed"


def test_generic_scorer_has_no_face_tier(portraits: dict[str, Rgb]) -> None:
    names = {d.name for d in Scorer().dimensions}
    assert not names & {"face_detected", "identity", "eyes_open"}
    assert {d.name for d in Scorer(use_case="generic").dimensions} == names
    with pytest.raises(SpecError, match="no detectable face"):
        Scorer(use_case="headshot", context=ScoringContext(references=(as_image(portraits["dog_donna"]),)))


def test_headshot_thresholds_can_be_overridden_and_are_checked() -> None:
    scorer = Scorer(use_case="headshot", thresholds={"identity": 0.5, "eyes_open": 0.2})
    assert scorer.thresholds["identity"] == 0.5
    with pytest.raises(SpecError, match="identity"):
        Scorer(use_case="headshot", thresholds={"identity": 3.0})
    with pytest.raises(SpecError, match="not among the scored"):
        Scorer(thresholds={"identity": 0.5})


def test_features_without_face_models_say_so(portraits: dict[str, Rgb]) -> None:
    with pytest.raises(ValueError, match="face_models"):
        _ = ImageFeatures(as_image(portraits["obama_1"])).faces


def test_a_slipped_dlib_fit_is_replaced_by_the_mesh_points() -> None:
    import dlib
    import numpy as np

    from imagefunnel.scoring.identity import _MESH_FIVE, _checked_shape

    landmarks = np.zeros((478, 2), dtype=np.float32)
    mesh_points = [(320.0, 230.0), (285.0, 225.0), (190.0, 220.0), (230.0, 220.0), (258.0, 280.0)]
    for index, point in zip(_MESH_FIVE, mesh_points, strict=True):
        landmarks[index] = point
    rect = dlib.rectangle(120, 120, 400, 400)
    close = dlib.full_object_detection(rect, [dlib.point(round(x) + 3, round(y) - 2) for x, y in mesh_points])
    assert _checked_shape(close, landmarks, rect) is close, "an agreeing dlib fit is kept"
    slipped_points = [dlib.point(round(x), round(y)) for x, y in mesh_points]
    slipped_points[0] = dlib.point(370, 230)  # an eye corner 50 px off, as seen on real crops
    slipped = dlib.full_object_detection(rect, slipped_points)
    fixed = _checked_shape(slipped, landmarks, rect)
    assert fixed is not slipped
    assert [(p.x, p.y) for p in fixed.parts()] == [(round(x), round(y)) for x, y in mesh_points]
