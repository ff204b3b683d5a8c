"""The ad-creative tier: calm safe areas for the copy, brand colours from the palette."""

from __future__ import annotations

import numpy as np
from product_fixtures import studio_shot
from scoring_fixtures import load_rgb

from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring import Scorer, ScoringContext
from imagefunnel.scoring.jobcontext import TEXT_DIMENSIONS
from imagefunnel.spec import CreativeBrief, SafeArea

TOP = SafeArea(x=0.0, y=0.0, width=1.0, height=0.25)
BRAND = CreativeBrief(palette=["#c81e28", "#ffffff"], palette_delta_e=12, safe_areas=[TOP])


def _values(brief: CreativeBrief, rgb: np.ndarray) -> dict[str, tuple[float, bool]]:
    context = ScoringContext(brief=brief, waived=TEXT_DIMENSIONS)
    verdict = Scorer(use_case="ad_creative", score_all=True, context=context).score(
        DecodedImage.from_array(rgb)
    )
    return {s.name: (s.value, s.passed) for s in verdict.scores}


def test_calm_safe_area_passes_and_a_busy_one_fails() -> None:
    calm = studio_shot(center=(0.5, 0.65), scale=0.45)  # a red product low in the frame, white above
    assert _values(BRAND, calm)["safe_area_busyness"][1]
    portrait = load_rgb("grace_hopper")  # a real photo: face and cap fill the top of the frame
    busy_brief = BRAND.model_copy(update={"safe_areas": [SafeArea(x=0.3, y=0.25, width=0.4, height=0.3)]})
    assert not _values(busy_brief, portrait)["safe_area_busyness"][1]


def test_brand_colours_within_delta_e_of_the_palette() -> None:
    on_brand = _values(BRAND, studio_shot(center=(0.5, 0.65)))
    assert on_brand["off_palette"][1] and on_brand["palette_presence"][1]
    off_brand = _values(BRAND, studio_shot(color=(30, 90, 200), center=(0.5, 0.65)))
    assert not off_brand["off_palette"][1]
    red_only = BRAND.model_copy(update={"palette": ["#c81e28"]})
    assert not _values(red_only, load_rgb("biden"))["palette_presence"][1]  # no brand red in it


def test_dimensions_without_their_brief_field_are_skipped() -> None:
    scorer = Scorer(use_case="ad_creative", context=ScoringContext(brief=CreativeBrief()))
    verdict = scorer.score(DecodedImage.from_array(studio_shot()))
    assert {"safe_area_busyness", "off_palette", "palette_presence"} <= set(verdict.skipped)
    assert scorer.skip_reason("off_palette") == "the job gives no palette"


def test_a_product_cut_off_by_the_frame_fails_an_ad_but_an_off_centre_one_may_leave_room_for_copy() -> None:
    cut = _values(BRAND, studio_shot(center=(0.92, 0.65), scale=0.45))
    assert not cut["product_cutoff"][1]
    beside_the_copy = _values(BRAND, studio_shot(center=(0.3, 0.65), scale=0.45))
    assert beside_the_copy["product_cutoff"][1]
    assert "product_centering" not in beside_the_copy  # an ad places its product where the layout wants
