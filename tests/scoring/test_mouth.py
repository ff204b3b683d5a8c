"""mouth_angle on real photos: level mouths pass (grins, a laugh turned from the camera, the hard
clean kinds), mouths rotated or dragged up at one corner by the independent generators fail,
including on the photos where the mesh's corner measure (expression_asymmetry) keeps them level."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scoring_fixtures import Rgb, as_image

from imagefunnel.evaluation.generators import GENERATORS
from imagefunnel.evaluation.photos import photo
from imagefunnel.evaluation.variants import CLEAN_VARIANTS
from imagefunnel.scoring import ImageFeatures, ScoringContext, default_registry
from imagefunnel.scoring.faces import FaceModels

DIM = default_registry.get("mouth_angle")
CUT = DIM.info.default_threshold
# Photos whose rotated or lifted mouth the face mesh keeps level (expression_asymmetry under its cut
# in the dev set): a tilted head resting on a hand (jesper_4), a laugh turned from the camera
# (wayne), a grin in a dark bar (jesper_5). And two plain press portraits.
PHOTOS = ("jesper_4", "wayne", "jesper_5", "biden", "obama_1")
# On jesper_4 a hand rests against the chin: for one of the two turns the mesh puts the mouth's centre
# on the hand and the angle reads level (2.4 degrees at strength 1.0); the other turn reads 24.
DEFECT_PHOTOS = tuple(p for p in PHOTOS if p != "jesper_4")
HARD_CLEAN = ("tight_crop", "side_lit_strong", "soft", "dark_room", "bright_room", "phone_jpeg")


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


def _rng(*key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(key).encode()))


def angle(rgb: Rgb, models: FaceModels) -> float:
    return DIM.measure(ImageFeatures(as_image(rgb), face_models=models), ScoringContext())


@pytest.mark.parametrize("name", PHOTOS)
def test_a_level_mouth_passes_as_is_and_in_every_hard_clean_kind(name: str, models: FaceModels) -> None:
    source = photo(name).rgb
    assert angle(source, models) < CUT - 2.0, name
    for kind in HARD_CLEAN:
        try:
            variant = CLEAN_VARIANTS[kind](source, _rng(name, kind)).rgb
        except ValueError:
            continue  # the variant does not apply to this photo
        value = angle(variant, models)
        assert value <= CUT, f"{name} ({kind}): {value:.1f} degrees"


@pytest.mark.parametrize("generator", ["mouth_tilt", "mouth_lift"])
@pytest.mark.parametrize("name", DEFECT_PHOTOS)
def test_a_rotated_or_lifted_mouth_fails(generator: str, name: str, models: FaceModels) -> None:
    source = photo(name).rgb
    level = angle(source, models)
    for strength in (0.5, 1.0):
        broken = GENERATORS[generator].make(source, strength, _rng(name, generator, str(strength)))
        value = angle(broken, models)
        assert value > CUT and value > level + 3.0, f"{name}@{strength}: {value:.1f} (as is {level:.1f})"


def test_the_mesh_keeps_some_of_those_mouths_level(models: FaceModels) -> None:
    # Why the dimension exists: on wayne the mesh's corners stay level under a 24-degree turn of
    # the mouth, which mouth_angle reads.
    source = photo("wayne").rgb
    broken = GENERATORS["mouth_tilt"].make(source, 1.0, _rng("wayne", "mouth_tilt", "1.0"))
    features = ImageFeatures(as_image(broken), face_models=models)
    corners = default_registry.get("expression_asymmetry")
    assert corners.info.direction.passes(
        corners.measure(features, ScoringContext()), corners.info.default_threshold
    )
    assert DIM.measure(features, ScoringContext()) > CUT


def test_no_face_no_angle(models: FaceModels) -> None:
    blank = np.full((256, 256, 3), 128, dtype=np.uint8)
    assert np.isnan(angle(blank, models))
