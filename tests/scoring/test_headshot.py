"""Tier 2, headshot: every clean portrait passes, the same portrait with its defect fails.

Defects are honest synthetic edits of the real photos (imagefunnel.market.face_defects): a pasted
copy of the face, eyes filled with the surrounding skin, a crop through the face, a shrunken frame, a
corner of the mouth pulled up, half the face darkened, a changed complexion, a busy backdrop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from scoring_fixtures import HUMANS, Rgb, as_image, mild_variants

from imagefunnel.market import defects, face_defects
from imagefunnel.scoring import ImageFeatures, Need, ScoringContext, default_registry
from imagefunnel.scoring.faces import FaceModels

Edit = Callable[[Rgb, float], Rgb]
EVERY = HUMANS
# Each dimension, the defect it exists to catch, and the photos on which that edit is visible to the
# models. The closed-eye edit does not register on luispedro (a three-quarter view: the mesh keeps
# the eye open at 0.15–0.19) nor on jesper_2 at strength 0.5 (0.150); see the report.
TARGETS: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "face_detected": (defects.face_cropped_out, EVERY),
    "face_count": (face_defects.extra_face, EVERY),
    "face_size": (face_defects.small_face, EVERY),
    "face_margin": (face_defects.face_cut, EVERY),
    "eyes_open": (face_defects.closed_eyes, tuple(p for p in EVERY if p not in ("luispedro", "jesper_2"))),
    "expression_asymmetry": (face_defects.lopsided_mouth, EVERY),
    # A three-quarter view (luispedro) and a face turned to the light (obama_2) keep the market's
    # half-face shadow under the 1.55-stop cut: see the independent shadow generators for these.
    "face_shadow": (face_defects.harsh_shadow, tuple(p for p in EVERY if p not in ("luispedro", "obama_2"))),
    "face_exposure": (defects.underexpose, EVERY),
    "background_clutter": (face_defects.cluttered_background, EVERY),
    "face_clipping": (defects.overexpose, EVERY),
    "face_sharpness": (defects.blur, EVERY),
}
# New this round, graded by the independent generators in test_independent_defects.py: eye_contrast
# reads pixels the market's closed-eye edit only half removes (eyes_open is its dimension).
TESTED_ELSEWHERE = {"eye_contrast"}
REFERENCED = {"skin_tone_stops", "skin_tone_delta_e", "identity", "color_shift"}
# Other photos of the same person: a clean candidate must pass against them.
SAME_PERSON = {
    "obama_1": ("obama_2", "obama_3"),
    "obama_2": ("obama_1", "obama_3"),
    "obama_3": ("obama_1", "obama_2"),
    "jesper_2": ("jesper_3",),
    "jesper_3": ("jesper_2",),
}


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


def features(rgb: Rgb, models: FaceModels) -> ImageFeatures:
    return ImageFeatures(as_image(rgb), face_models=models)


def judge(name: str, feats: ImageFeatures, context: ScoringContext | None = None) -> tuple[float, bool]:
    dim = default_registry.get(name)
    value = dim.measure(feats, context or ScoringContext())
    return value, dim.info.direction.passes(value, dim.info.default_threshold)


def measure(
    name: str, rgb: Rgb, models: FaceModels, context: ScoringContext | None = None
) -> tuple[float, bool]:
    return judge(name, features(rgb, models), context)


def apply(edit: Edit, rgb: Rgb, strength: float, models: FaceModels) -> Rgb:
    """Apply a defect; the face-aware ones share the test's models instead of building their own."""
    if "models" in inspect.signature(edit).parameters:
        return edit(rgb, strength, models=models)  # type: ignore[call-arg]
    return edit(rgb, strength)


@pytest.fixture(scope="module")
def clean(portraits: dict[str, Rgb], models: FaceModels) -> dict[str, ImageFeatures]:
    """Each portrait's features, analysed once for every dimension."""
    return {photo: features(portraits[photo], models) for photo in HUMANS}


def test_every_headshot_dimension_is_registered_with_full_metadata() -> None:
    names = set(default_registry.names(tier=2, use_case="headshot"))
    assert names == set(TARGETS) | REFERENCED | TESTED_ELSEWHERE
    for name in names:
        info = default_registry.get(name).info
        assert info.use_cases == {"headshot"} and Need.FACE in info.needs
        assert (Need.REFERENCE in info.needs) == (name in REFERENCED)
        assert info.unit and info.description and info.fail_label
        # Cheapest first: a face box is cheaper than the mesh, the mesh than dlib's descriptor.
        assert info.cost >= default_registry.get("face_detected").info.cost
    assert default_registry.get("identity").info.cost == max(default_registry.get(n).info.cost for n in names)
    assert not set(default_registry.names(use_case="generic")) & names


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_clean_portraits_pass_and_their_defect_fails(
    name: str, portraits: dict[str, Rgb], models: FaceModels, clean: dict[str, ImageFeatures]
) -> None:
    edit, photos = TARGETS[name]
    assert len(photos) >= 3
    for photo in EVERY:
        value, passed = judge(name, clean[photo])
        assert passed, f"clean {photo}: {name} = {value:.3f} rejected"
    # The market's shadow at 0.5 darkens half the face by ~1.2 stops: ordinary portrait lighting
    # (2:1-4:1 is 1-2 stops), which face_shadow now lets through; at 1.0 it is a harsh shadow.
    strengths = (1.0,) if name == "face_shadow" else (0.5, 1.0)
    for photo in photos:
        for strength in strengths:
            value, passed = measure(name, apply(edit, portraits[photo], strength, models), models)
            assert not passed, f"{photo} with {edit.__name__}@{strength}: {name} = {value:.3f} accepted"


@pytest.mark.parametrize("photo", HUMANS)
def test_mild_variants_pass_every_headshot_dimension(
    photo: str, portraits: dict[str, Rgb], models: FaceModels
) -> None:
    for variant, rgb in mild_variants(portraits[photo]).items():
        if variant == "crop 50%":
            continue  # a central half crop cuts through the face: a framing defect, not a variant
        feats = features(rgb, models)
        for name in TARGETS:
            if name == "face_clipping" and variant == "brighter 15%":
                continue  # +15 % in sRGB, clipped, burns out 40-70 % of a pale face: overexposure
            if name == "face_sharpness" and max(rgb.shape[:2]) < 128:
                continue  # a 95 px thumbnail's face, judged at the face's own scale, is soft
            value, passed = judge(name, feats)
            assert passed, f"{photo} ({variant}): {name} = {value:.3f} rejected"


def test_no_face_fails_detection_and_is_not_measured_as_one(
    portraits: dict[str, Rgb], models: FaceModels
) -> None:
    dog = portraits["dog_donna"]
    assert measure("face_detected", dog, models) == (0.0, False)
    assert measure("face_size", dog, models) == (0.0, False)
    for name in ("face_margin", "eyes_open", "expression_asymmetry", "face_shadow", "face_exposure"):
        value, passed = measure(name, dog, models)
        assert value != value and not passed  # NaN: not measurable, never a pass


def refs(portraits: dict[str, Rgb], *names: str) -> ScoringContext:
    return ScoringContext(references=tuple(as_image(portraits[n]) for n in names))


@pytest.mark.parametrize("name", ["skin_tone_stops", "skin_tone_delta_e"])
def test_skin_tone_passes_other_photos_of_the_person_and_fails_a_changed_complexion(
    name: str, portraits: dict[str, Rgb], models: FaceModels
) -> None:
    for photo, others in SAME_PERSON.items():
        value, passed = measure(name, portraits[photo], models, refs(portraits, *others))
        assert passed, f"{photo} vs {others}: {name} = {value:.2f} rejected"
    # Against the photo the candidate came from, so that lighting is the same on both sides. At
    # strength 0.5 the market's shift is ~1.6 stops: as much as a dim room moves a face against its
    # reference, which must pass (the dev set's dark_room variants); 1.0 is a changed complexion,
    # which one of the two skin-tone dimensions rejects.
    other = "skin_tone_delta_e" if name == "skin_tone_stops" else "skin_tone_stops"
    for photo in EVERY:
        shifted = face_defects.skin_tone_shift(portraits[photo], 1.0, models=models)
        value, passed = measure(name, shifted, models, refs(portraits, photo))
        second, second_passed = measure(other, shifted, models, refs(portraits, photo))
        assert not (passed and second_passed), (
            f"{photo} shifted: {name} = {value:.2f}, {other} = {second:.2f}"
        )


def test_skin_tone_takes_the_nearest_reference(portraits: dict[str, Rgb], models: FaceModels) -> None:
    near, _ = measure("skin_tone_stops", portraits["obama_2"], models, refs(portraits, "obama_1"))
    far, _ = measure("skin_tone_stops", portraits["obama_2"], models, refs(portraits, "obama_3"))
    both, _ = measure("skin_tone_stops", portraits["obama_2"], models, refs(portraits, "obama_3", "obama_1"))
    assert both == pytest.approx(min(near, far))


@pytest.mark.parametrize(
    "edit",
    [
        face_defects.extra_face,
        face_defects.closed_eyes,
        face_defects.face_cut,
        face_defects.harsh_shadow,
        face_defects.skin_tone_shift,
        face_defects.lopsided_mouth,
        face_defects.cluttered_background,
    ],
)
def test_face_defects_are_deterministic_and_need_a_face(
    edit: Edit, portraits: dict[str, Rgb], models: FaceModels
) -> None:
    rgb = portraits["biden"]
    out = edit(rgb, 0.7)  # with models of its own, as the market calls it
    assert out.shape == rgb.shape and out.dtype == rgb.dtype
    assert (out == apply(edit, rgb, 0.7, models)).all() and (out != rgb).any()
    with pytest.raises(ValueError, match="detectable face"):
        apply(edit, portraits["dog_donna"], 1.0, models)


def test_market_can_inject_the_headshot_defects(portraits: dict[str, Rgb]) -> None:
    for defect in defects.FACE_DEFECTS:
        out = defects.apply_pixel_defect(portraits["obama_1"], defect, 0.5)
        assert out.shape == portraits["obama_1"].shape
        assert defect not in defects.PIXEL_DEFECTS  # tier-1 tests read PIXEL_DEFECTS
