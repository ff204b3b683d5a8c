"""The Scorer: configuration checks, cheap-first early reject, decoding, batches."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scoring_fixtures import HUMANS, PORTRAITS, Rgb, as_image

from imagefunnel.errors import SpecError
from imagefunnel.market import defects
from imagefunnel.market.defects import PIXEL_DEFECTS, Defect
from imagefunnel.scoring import (
    DimensionInfo,
    Direction,
    ImageFeatures,
    Need,
    Scorer,
    ScoringContext,
    default_registry,
)

# Defects that tier 1 must reject; text and framing are for the headshot tier, and the market's
# additive cast (inside the range of real warm light) for color_shift against the references.
TIER1_DEFECTS = sorted(set(PIXEL_DEFECTS) - {Defect.TEXT_OVERLAY, Defect.FACE_CROPPED_OUT, Defect.COLOR_CAST})
SCORER = Scorer()


def png_bytes(rgb: Rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_every_clean_portrait_and_mild_variant_passes(clean_variants: dict[str, dict[str, Rgb]]) -> None:
    rejected = [
        f"{photo} ({variant}): {'; '.join(verdict.reasons)}"
        for photo, variants in clean_variants.items()
        for variant, rgb in variants.items()
        # a 95 px thumbnail (half of the 190 px photo) is judged as shown large: soft, rightly
        if max(rgb.shape[:2]) >= 128 and not (verdict := SCORER.score(as_image(rgb))).passed
    ]
    assert rejected == []


@pytest.mark.parametrize("defect", TIER1_DEFECTS)
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_every_defect_is_rejected(defect: Defect, strength: float, portraits: dict[str, Rgb]) -> None:
    for photo in HUMANS:
        verdict = SCORER.score(as_image(defects.apply_pixel_defect(portraits[photo], defect, strength)))
        assert not verdict.passed, f"{photo} with {defect}@{strength} accepted"
        assert len(verdict.failed) == 1  # early reject: measuring stopped at the first failure
        assert len(verdict.scores) + len(verdict.skipped) == len(SCORER.dimensions)


def test_clean_portrait_files_pass_from_bytes() -> None:
    for photo in HUMANS:
        verdict = SCORER.score_bytes((PORTRAITS / f"{photo}.jpg").read_bytes())
        assert verdict.passed, verdict.reasons
        assert verdict.skipped == ()
        assert verdict.get("decodable") is not None


def test_dimensions_run_cheapest_first() -> None:
    costs = [info.cost for info in SCORER.dimensions]
    assert costs == sorted(costs)
    assert SCORER.dimensions[0].name == "decodable"
    # Tier 1 and the built-in tier-3 scorers (no text, no NSFW) apply to every use case; an optional
    # extra that cannot run here (CLIP without weights) is left out of the default set.
    tiers = {*default_registry.names(tier=1), *default_registry.names(tier=3)}
    runnable = {
        n for n in tiers if not default_registry.get(n).info.optional or not default_registry.get(n).probe()
    }
    assert {info.name for info in SCORER.dimensions} == runnable


def test_early_reject_skips_the_rest_unless_score_all(portraits: dict[str, Rgb]) -> None:
    blank = as_image(defects.blank(portraits["biden"]))
    early = SCORER.score(blank)
    assert [s.name for s in early.failed] == ["uniformity"]
    assert "sharpness" in early.skipped and "noise" in early.skipped
    full = Scorer(score_all=True).score(blank)
    assert full.skipped == ()
    assert {"uniformity", "sharpness"} <= {s.name for s in full.failed}


def test_truncated_bytes_fail_decodable_with_the_decoder_message(portraits: dict[str, Rgb]) -> None:
    data = defects.truncate(png_bytes(portraits["obama_2"]), 0.5)
    verdict = SCORER.score_bytes(data)
    assert not verdict.passed
    assert [s.name for s in verdict.scores] == ["decodable"]
    assert verdict.reasons[0].startswith("decodable: truncated PNG")
    assert set(verdict.skipped) == set(SCORER.thresholds) - {"decodable"}


def test_threshold_overrides_change_the_verdict(portraits: dict[str, Rgb]) -> None:
    strict = Scorer(thresholds={"sharpness": 0.99}, dimensions=["sharpness"])
    verdict = strict.score(as_image(portraits["jesper_3"]))
    assert not verdict.passed
    assert verdict.reasons[0].endswith("< 0.990 (blurry)")
    assert strict.thresholds == {"sharpness": 0.99}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dimensions": ["sharpnes"]}, "did you mean 'sharpness'"),
        ({"thresholds": {"nois": 3.0}}, r"threshold for 'nois': dimension is unknown; did you mean 'noise'"),
        ({"dimensions": ["noise"], "thresholds": {"sharpness": 0.1}}, "not among the scored dimensions"),
        ({"thresholds": {"uniformity": 1.5}}, r"must be a number in \[0, 1\]"),
        ({"thresholds": {"noise": float("nan")}}, "must be a number"),
        ({"dimensions": []}, "no scoring dimensions"),
        ({"dimensions": "noise"}, "list of names"),
        ({"dimensions": ["noise", "noise"]}, "listed twice: noise"),
    ],
)
def test_bad_configuration_is_a_spec_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Scorer(**kwargs)  # type: ignore[arg-type]


def test_score_many_mixes_bytes_and_decoded_images(portraits: dict[str, Rgb]) -> None:
    clean = portraits["grace_hopper"]
    verdicts = SCORER.score_many(
        [as_image(clean), png_bytes(clean), b"not an image", as_image(defects.blur(clean))]
    )
    assert [v.passed for v in verdicts] == [True, True, False, False]
    assert verdicts[2].reasons[0].startswith("decodable: not an image (text)")
    assert verdicts[3].failed[0].name == "sharpness"


def test_size_limits_are_passed_to_the_decoder(portraits: dict[str, Rgb]) -> None:
    verdict = Scorer(max_pixels=10_000).score_bytes(png_bytes(portraits["luispedro"]))
    assert verdict.reasons == ("decodable: image is 300x300 = 0.09 MP, over the 0.01 MP limit",)


def test_dimensions_missing_context_inputs_are_skipped() -> None:
    registry = default_registry.copy()
    seen: list[str | None] = []

    @registry.register(
        DimensionInfo(
            name="prompt_match",
            tier=3,
            direction=Direction.HIGHER_IS_BETTER,
            value_range=(0.0, 1.0),
            unit="score",
            default_threshold=0.5,
            cost=10.0,
            fail_label="off-prompt",
            description="test double",
            needs=frozenset({Need.PROMPT}),
        )
    )
    def prompt_match(features: ImageFeatures, context: ScoringContext) -> float:
        seen.append(context.prompt)
        return 0.9

    scorer = Scorer(registry=registry, dimensions=["decodable", "prompt_match"])
    image = as_image(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert scorer.score(image).skipped == ("prompt_match",)
    verdict = scorer.score(image, ScoringContext(prompt="a red car"))
    assert verdict.value("prompt_match") == 0.9 and seen == ["a red car"]


def test_cpu_seconds_are_reported_for_measured_dimensions_only(portraits: dict[str, Rgb]) -> None:
    black = np.zeros((256, 256, 3), dtype=np.uint8)  # fails an early dimension, the rest is skipped
    scorer = Scorer()
    cpu: dict[str, float] = {}
    verdict = scorer.score(as_image(black), cpu_s=cpu)
    assert set(cpu) == {s.name for s in verdict.scores}
    assert all(v >= 0.0 for v in cpu.values())
    again = scorer.score(as_image(portraits["biden"]), cpu_s=cpu)  # adds up across images
    assert set(cpu) == {s.name for s in verdict.scores} | {s.name for s in again.scores}
    assert again == scorer.score(as_image(portraits["biden"]))  # the clock changes nothing
