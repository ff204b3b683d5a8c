"""The background-removal tier on real photos: the self-hosted model's cutouts and broken mattes.

Good mattes are the self-hosted model's own cutouts of portraits it handles well (checked by eye);
broken ones come from ``evaluation.mask_defects``, written apart from the scorers. The model's
cutouts of three harder photos are genuinely flawed (a blob of background kept, a dog on a light
floor): the tier must reject those as well.
"""

from __future__ import annotations

import numpy as np
import pytest
from scoring_fixtures import PORTRAITS

from imagefunnel.evaluation.mask_defects import MASK_DEFECTS
from imagefunnel.imaging import DecodedImage, decode_image
from imagefunnel.providers.segmentation import SelfieCutter, encode_rgba
from imagefunnel.scoring import Scorer, ScoringContext, default_registry
from imagefunnel.scoring.cutout import BACKGROUND_REMOVAL
from imagefunnel.scoring.jobcontext import TEXT_DIMENSIONS

pytest.importorskip("mediapipe")

CLEAN = ("biden", "grace_hopper", "luispedro", "obama_1")
FLAWED = ("jesper_3", "obama_2")
# The dimension that must catch each defect (others may fail too).
CAUGHT_BY = {
    "eroded": {"edge_alignment", "halo_width", "subject_coverage"},
    "halo": {"edge_alignment", "halo_width"},
    "shifted": {"edge_alignment", "halo_width"},
    "holed": {"mask_holes"},
    "confetti": {"mask_fragments"},
    "smeared": {"alpha_undecided"},
    "blocky": {"alpha_undecided"},
    "inverted": {"subject_coverage"},
    "empty": {"mask_extent"},
    "full": {"mask_extent"},
}


@pytest.fixture(scope="module")
def cutouts() -> dict[str, tuple[DecodedImage, np.ndarray]]:
    cutter = SelfieCutter()
    found = {}
    for name in (*CLEAN, *FLAWED):
        source = decode_image((PORTRAITS / f"{name}.jpg").read_bytes())
        found[name] = (source, cutter.alpha(source.rgb))
    return found


def _scorer(source: DecodedImage) -> Scorer:
    # As a background-removal job scores (jobcontext): text and NSFW of the customer's photo waived.
    context = ScoringContext(source=source, waived=TEXT_DIMENSIONS | {"nsfw"})
    return Scorer(use_case=BACKGROUND_REMOVAL, score_all=True, context=context)


@pytest.mark.parametrize("name", CLEAN)
def test_good_cutouts_pass_every_dimension(name: str, cutouts: dict) -> None:
    source, alpha = cutouts[name]
    verdict = _scorer(source).score_bytes(encode_rgba(source.rgb, alpha))
    assert verdict.passed, verdict.reasons


@pytest.mark.parametrize("defect", sorted(MASK_DEFECTS))
def test_each_broken_matte_is_rejected_by_its_dimension(defect: str, cutouts: dict) -> None:
    for name in CLEAN:
        source, alpha = cutouts[name]
        broken = MASK_DEFECTS[defect](alpha, np.random.default_rng(0))
        verdict = _scorer(source).score_bytes(encode_rgba(source.rgb, broken))
        failed = {score.name for score in verdict.scores if not score.passed}
        assert failed & CAUGHT_BY[defect], f"{name} {defect}: failed only {failed}"


@pytest.mark.parametrize("name", FLAWED)
def test_flawed_model_cutouts_are_rejected(name: str, cutouts: dict) -> None:
    source, alpha = cutouts[name]
    assert not _scorer(source).score_bytes(encode_rgba(source.rgb, alpha)).passed


def test_output_without_alpha_fails_and_source_dimensions_need_a_source(cutouts: dict) -> None:
    source, _ = cutouts["biden"]
    opaque = DecodedImage.from_array(source.rgb)
    verdict = _scorer(source).score(opaque)
    assert any(s.name == "alpha_undecided" and not s.passed for s in verdict.scores)
    no_source = Scorer(use_case=BACKGROUND_REMOVAL)
    assert no_source.skip_reason("edge_alignment", ScoringContext()) == "the job gives no source"


def test_tier_applies_only_to_background_removal() -> None:
    names = set(default_registry.names(use_case=BACKGROUND_REMOVAL))
    assert {"edge_alignment", "halo_width", "mask_holes", "subject_coverage"} <= names
    assert "edge_alignment" not in default_registry.names(use_case="headshot")
    # The composite over white is judged by tier 1, less its portrait assumptions.
    assert "sharpness" in names and "highlight_clipping" not in names
