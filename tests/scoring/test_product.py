"""The product tier, and the generic tier's applicability: a clean product on white must pass."""

from __future__ import annotations

import numpy as np
import pytest
from product_fixtures import on_backdrop, studio_shot
from scoring_fixtures import load_rgb

from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring import Scorer, ScoringContext, default_registry
from imagefunnel.scoring.jobcontext import TEXT_DIMENSIONS
from imagefunnel.spec import CreativeBrief

WHITE = CreativeBrief(background="#ffffff")


def _scorer(*, source: np.ndarray | None = None, brief: CreativeBrief = WHITE) -> Scorer:
    context = ScoringContext(
        source=DecodedImage.from_array(source) if source is not None else None,
        brief=brief,
        waived=TEXT_DIMENSIONS,  # OCR is tested on its own; here it would only cost time
    )
    return Scorer(use_case="product", score_all=True, context=context)


def _failed(scorer: Scorer, rgb: np.ndarray) -> set[str]:
    return {s.name for s in scorer.score(DecodedImage.from_array(rgb)).scores if not s.passed}


def test_red_box_on_white_passes_product_but_not_the_portrait_assumptions() -> None:
    box = studio_shot()
    generic = Scorer(use_case="generic", score_all=True, context=ScoringContext(waived=TEXT_DIMENSIONS))
    # What a portrait rule says (highlight clipping reads the central oval, which the box fills).
    assert "color_cast" in _failed(generic, box)
    assert _failed(_scorer(source=studio_shot(seed=3, scale=0.5)), box) == set()
    for name in ("color_cast", "highlight_clipping", "uniformity"):
        assert "product" in default_registry.get(name).info.not_for


@pytest.mark.parametrize(
    "clean", [studio_shot(shape="bottle"), studio_shot(scale=0.8), studio_shot(color=(30, 120, 60), seed=4)]
)
def test_clean_studio_shots_pass(clean: np.ndarray) -> None:
    assert _failed(_scorer(), clean) == set()


@pytest.mark.parametrize(
    ("defect", "image", "dimension"),
    [
        ("off centre", studio_shot(center=(0.25, 0.3)), "product_centering"),
        ("cut off", studio_shot(center=(0.92, 0.5), scale=0.5), "product_cutoff"),
        (
            "cluttered (a real photo behind)",
            on_backdrop(studio_shot(), load_rgb("obama_1")),
            "backdrop_clutter",
        ),
        ("not a product shot (a real portrait)", load_rgb("biden"), "product_cutoff"),
        ("speck of a product", studio_shot(scale=0.1), "product_area"),
        (
            "grey, not the white asked for",
            studio_shot(background=(225, 225, 225)),
            "background_color_delta_e",
        ),
    ],
)
def test_defects_fail_their_dimension(defect: str, image: np.ndarray, dimension: str) -> None:
    assert dimension in _failed(_scorer(), image), defect


def test_colour_fidelity_against_the_reference_photo() -> None:
    reference = studio_shot(seed=7, scale=0.5, shape="bottle")  # another shot of the same red product
    scorer = _scorer(source=reference)
    assert "product_color_delta_e" not in _failed(scorer, studio_shot())
    assert "product_color_delta_e" in _failed(scorer, studio_shot(color=(40, 60, 200)))
    assert "product_color_delta_e" in _failed(scorer, studio_shot(color=(200, 110, 40)))  # orange


def test_the_reference_alpha_marks_the_product() -> None:
    cut = studio_shot()
    alpha = np.where(np.abs(cut.astype(int) - 255).sum(-1) > 60, 255, 0).astype(np.uint8)
    reference = DecodedImage(rgb=cut, format="PNG", sha256="x", alpha=alpha)
    context = ScoringContext(source=reference, brief=WHITE, waived=TEXT_DIMENSIONS)
    verdict = Scorer(use_case="product", score_all=True, context=context).score(DecodedImage.from_array(cut))
    assert verdict.passed, verdict.reasons


def test_text_is_checked_unless_the_brief_asks_for_it() -> None:
    assert "text_area" in [d.name for d in Scorer(use_case="product").dimensions]
    waived = ScoringContext(waived=TEXT_DIMENSIONS)
    assert "text_area" not in [d.name for d in Scorer(use_case="product", context=waived).dimensions]
