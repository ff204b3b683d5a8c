"""The changed and new dimensions on real photos, graded by what they were not tuned with.

Both directions: every hard clean kind (a tight crop, 3-stop side light, acceptable soft focus, dim
and bright rooms, a patterned wall, a phone camera's JPEG, glasses and broad smiles) passes every
dimension; every independent defect generator of ``imagefunnel.evaluation.generators`` is rejected
by at least one of the dimensions labelled for it. The candidate's own source photo is the job's
reference, as in the dev set.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from scoring_fixtures import Rgb, as_image

from imagefunnel.evaluation.generators import GENERATORS
from imagefunnel.evaluation.photos import photo
from imagefunnel.evaluation.variants import CLEAN_VARIANTS
from imagefunnel.scoring import ImageFeatures, ScoringContext, default_registry
from imagefunnel.scoring.faces import FaceModels
from imagefunnel.scoring.skin import face_shadow_edge

PHOTOS = ("biden", "obama_1", "grace_hopper")
HARD_CLEAN = (
    "tight_crop",
    "side_lit_strong",
    "soft",
    "dark_room",
    "bright_room",
    "patterned_backdrop",
    "phone_jpeg",
)
# The dimensions this round changed or added, judged on every hard clean kind.
CHANGED = (
    "sharpness",
    "pixelation",
    "color_cast",
    "face_margin",
    "face_shadow",
    "face_exposure",
    "face_clipping",
    "face_sharpness",
    "eye_contrast",
    "color_shift",
    "background_clutter",
    "skin_tone_stops",
    "skin_tone_delta_e",
    "eyes_open",
)


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


@pytest.fixture(scope="module")
def sources() -> dict[str, Rgb]:
    return {name: photo(name).rgb for name in (*PHOTOS, "jim", "wayne", "jesper_5")}


def judge(
    rgb: Rgb, reference: Rgb, models: FaceModels, names: tuple[str, ...]
) -> dict[str, tuple[float, bool]]:
    features = ImageFeatures(as_image(rgb), face_models=models)
    context = ScoringContext(references=(as_image(reference),))
    out = {}
    for name in names:
        dim = default_registry.get(name)
        value = dim.measure(features, context)
        out[name] = (value, dim.info.direction.passes(value, dim.info.default_threshold))
    return out


def _rng(*key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(key).encode()))


@pytest.mark.parametrize("kind", HARD_CLEAN)
def test_hard_clean_kind_passes_every_changed_dimension(
    kind: str, sources: dict[str, Rgb], models: FaceModels
) -> None:
    applied = 0
    for name in PHOTOS:
        try:
            variant = CLEAN_VARIANTS[kind](sources[name], _rng(name, kind)).rgb
        except ValueError:
            continue  # the variant does not apply to this photo (e.g. no plain backdrop to pattern)
        applied += 1
        for dim, (value, passed) in judge(variant, sources[name], models, CHANGED).items():
            assert passed, f"{name} ({kind}): {dim} = {value:.3f} rejected"
    assert applied, f"{kind} applied to none of the test photos"


@pytest.mark.parametrize("name", ["jim", "wayne", "jesper_5"])
def test_glasses_squints_and_broad_smiles_pass(
    name: str, sources: dict[str, Rgb], models: FaceModels
) -> None:
    # Flash photos in a bar: glasses and a wide grin (jim), laughing with narrowed eyes (wayne).
    checks = (*CHANGED, "expression_asymmetry", "face_count")
    for dim, (value, passed) in judge(sources[name], sources[name], models, checks).items():
        assert passed, f"{name}: {dim} = {value:.3f} rejected"


@pytest.mark.parametrize("name", ["obama_1", "grace_hopper", "biden"])
def test_a_shadow_edge_counts_and_side_light_does_not(name: str, models: FaceModels) -> None:
    # Strong side light (a ramp over the whole frame) keeps the edge measure well under the cut;
    # a soft-edged shadow across the face (strength 0.5, the weakest hard one) is rejected.
    source = photo(name).rgb
    dim = default_registry.get("face_shadow")
    cut = dim.info.default_threshold
    lit = CLEAN_VARIANTS["side_lit_strong"](source, _rng(name, "side_lit_strong")).rgb
    ramp = face_shadow_edge(ImageFeatures(as_image(lit), face_models=models).faces)
    assert ramp < cut - 0.3, f"{name}: side light's edge {ramp:.2f}"
    if name != "biden":  # biden's soft shadow leaves most of his face on one side (see _PLAN)
        shaded = GENERATORS["shadow_soft"].make(source, 0.5, _rng(name, "shadow_soft", "0.5"))
        value = dim.measure(ImageFeatures(as_image(shaded), face_models=models), ScoringContext())
        assert value > cut, f"{name}: soft shadow {value:.2f}"


@pytest.mark.parametrize("name", ["grace_hopper", "jesper_3"])
def test_a_sharp_flag_and_a_poster_wall_behind_the_person_are_not_clutter(
    name: str, models: FaceModels
) -> None:
    # The hardest clean backgrounds of the dev set: a flag's sharp red, white and blue outlines
    # (grace_hopper), framed posters on a wall (jesper_3). Both sit under the cut with margin.
    source = photo(name).rgb
    value, passed = judge(source, source, models, ("background_clutter",))["background_clutter"]
    assert passed and value < 0.08, f"{name}: background_clutter = {value:.3f}"


# (photos, strengths, share of them that must be caught). OCR costs ~0.3 s an image: the text
# generators are checked on one photo (the dev set has them all). Where the scorer is known to miss
# some, the measured share is asserted, so that it cannot silently get worse:
# - shadows: an edge placed by the Haar box sometimes leaves most of the face on one side (biden
#   at 1.0 hard, 0.5 soft): 5 of the 6 are caught since face_shadow also reads a shadow's edge;
# - skin hue at 1.0 on obama_1 and at 0.5 on jesper_2: ΔE 11-12 under the 15 that other photos of
#   the same person need (flash vs scan vs daylight);
_PLAN: dict[str, tuple[tuple[str, ...], tuple[float, ...], float]] = {
    **{name: (PHOTOS[:2], (0.5, 1.0), 1.0) for name in GENERATORS},
    **{name: (PHOTOS[:1], (0.5,), 1.0) for name, g in GENERATORS.items() if g.family == "text"},
    "shadow_hard": (PHOTOS, (0.5, 1.0), 0.8),
    "shadow_soft": (PHOTOS, (0.5, 1.0), 0.8),
    "skin_hue": (PHOTOS, (0.5, 1.0), 0.8),
    # Pasted objects are judged on all three photos, at 0.5 too: their colour outlines count.
    "clutter_shapes": (PHOTOS, (0.5, 1.0), 1.0),
    "clutter_shelves": (PHOTOS, (0.5, 1.0), 1.0),
}
# Not caught by the default thresholds (see the notes of the evaluation): a face made 1.4-2 stops
# lighter or darker against its reference, which a dim room also does to a clean photo.
KNOWN_MISSES = frozenset({"skin_stops"})


def test_known_misses_are_only_those_named() -> None:
    assert set(GENERATORS) >= KNOWN_MISSES


@pytest.mark.parametrize("generator", sorted(set(GENERATORS) - KNOWN_MISSES))
def test_independent_generator_is_caught_by_a_dimension_meant_for_it(
    generator: str, sources: dict[str, Rgb], models: FaceModels
) -> None:
    gen = GENERATORS[generator]
    # A generator made for a dimension that is not registered yet is graded once it is: the others
    # it names (face_count for a duplicated eye) were never meant to catch it alone.
    unregistered = [n for n in gen.expect if n not in default_registry]
    if unregistered:
        pytest.skip(f"{generator} is made for {', '.join(unregistered)}, not registered yet")
    expect = gen.expect
    photos, strengths, share = _PLAN[generator]
    missed = []
    for name in photos:
        for strength in strengths:
            broken = gen.make(sources[name], strength, _rng(name, generator, str(strength)))
            found = judge(broken, sources[name], models, expect)
            if all(passed for _, passed in found.values()):
                values = ", ".join(
                    f"{d} = {v:.3f}" if not math.isnan(v) else f"{d} = nan" for d, (v, _) in found.items()
                )
                missed.append(f"{name}@{strength}: {values}")
    tried = len(photos) * len(strengths)
    assert tried - len(missed) >= share * tried, f"{generator} passed: " + "; ".join(missed)


@pytest.mark.parametrize(
    ("name", "generator"), [("astronaut", "eyes_painted"), ("jesper_5", "eyes_squashed")]
)
def test_eye_contrast_alone_rejects_eyes_that_show_only_skin(
    name: str, generator: str, models: FaceModels
) -> None:
    # Its cut sits under the clean minimum of 15 people (sepia prints and flash photos with glasses
    # measure 0.17), so it catches only eyes that show almost nothing but skin; the clean photo of
    # the same person passes.
    source = photo(name).rgb
    dim = default_registry.get("eye_contrast")
    broken = GENERATORS[generator].make(source, 1.0, _rng(name, generator, "1.0"))
    ((value, passed),) = judge(broken, source, models, ("eye_contrast",)).values()
    assert not passed, f"{name} with {generator}: eye_contrast = {value:.3f} accepted"
    ((clean_value, clean_passed),) = judge(source, source, models, ("eye_contrast",)).values()
    assert clean_passed and clean_value > dim.info.default_threshold + 0.2, clean_value
