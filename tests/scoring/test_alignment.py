"""Prompt alignment (CLIP) is optional: skipped with a precise reason unless weights are configured."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from imagefunnel.imaging import decode_image
from imagefunnel.scoring import Scorer, ScoringContext
from imagefunnel.scoring.alignment import WEIGHTS_ENV, ClipAligner

PORTRAIT = (
    Path(__file__).parents[2] / "src" / "imagefunnel" / "market" / "assets" / "portraits" / "obama_1.jpg"
)
HAVE_CLIP = (
    importlib.util.find_spec("open_clip") is not None and importlib.util.find_spec("torch") is not None
)


def test_without_weights_the_reason_says_how_to_enable_it(tmp_path: Path) -> None:
    reason = ClipAligner(environ={}).unavailable()
    assert reason is not None
    assert ("clip extra" in reason) or (WEIGHTS_ENV in reason)
    missing = ClipAligner(environ={WEIGHTS_ENV: str(tmp_path / "nope.pt")}).unavailable()
    assert missing is not None and ("not a file" in missing or "clip extra" in missing)


def test_without_weights_alignment_is_left_out_or_skipped_never_faked() -> None:
    if os.environ.get(WEIGHTS_ENV):
        pytest.skip("CLIP weights are configured here: the dimension runs for real")
    image = decode_image(PORTRAIT.read_bytes())
    context = ScoringContext(prompt="a portrait of a man in a suit")
    # Not in the default set where it cannot run...
    default = Scorer(use_case="generic")
    assert "prompt_alignment" not in [d.name for d in default.dimensions]
    assert default.score(image, context).get("prompt_alignment") is None
    # ...and asked for by name it is skipped with the reason, not given a made-up value.
    explicit = Scorer(dimensions=["sharpness", "prompt_alignment"])
    verdict = explicit.score(image, context)
    assert verdict.get("prompt_alignment") is None
    assert "prompt_alignment" in verdict.skipped
    reason = explicit.skip_reason("prompt_alignment")
    assert WEIGHTS_ENV in reason or "clip extra" in reason


@pytest.mark.skipif(
    not (HAVE_CLIP and os.environ.get(WEIGHTS_ENV)), reason="needs the clip extra and local weights"
)
def test_matching_prompt_scores_higher_than_an_unrelated_one() -> None:
    aligner = ClipAligner()
    rgb = decode_image(PORTRAIT.read_bytes()).rgb
    matching = aligner.similarity(rgb, "a photo of a smiling man in a suit and tie")
    unrelated = aligner.similarity(rgb, "a bowl of fruit on a wooden table")
    assert matching > unrelated + 0.05
