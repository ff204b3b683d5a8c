"""Every headshot dimension's value on the bundled portraits, against values recorded before.

Speed work (lookup tables, shared intermediates, models fed the copy they need) must not move what
is measured. The recorded values (``data/golden_headshot.json``) were written by the scorer before
such changes; regenerate them only for a change that is meant to move a value, and say so::

    .venv/bin/python tests/scoring/test_golden_values.py --write

Model outputs depend a little on the CPU's instruction set, so values are compared with a small
tolerance; a pass/fail that differs is always a failure unless the value sits at the threshold.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scoring_fixtures import HUMANS, Rgb, as_image, load_rgb

from imagefunnel.evaluation.variants import encode_jpeg
from imagefunnel.imaging import decode_image
from imagefunnel.scoring import Scorer, ScoringContext

GOLDEN = Path(__file__).parent / "data" / "golden_headshot.json"
REFERENCE = "obama_1"
ABS_TOL = 1e-4
REL_TOL = 1e-4

Values = dict[str, dict[str, float | None]]


def _with_text(rgb: Rgb) -> Rgb:
    out = rgb.copy()
    h, w = out.shape[:2]
    cv2.putText(
        out, "ACME SALE 50% OFF", (w // 20, h // 8), cv2.FONT_HERSHEY_SIMPLEX, w / 600, (255, 255, 0), 2
    )
    return out


def _megapixel(rgb: Rgb) -> Rgb:
    big = np.asarray(cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    return decode_image(encode_jpeg(big, 92)).rgb


def golden_images() -> dict[str, Rgb]:
    """The portraits as they are, the dog, one with a text overlay, two at 1 MP (the bench's size)."""
    images = {name: load_rgb(name) for name in (*HUMANS, "dog_donna")}
    images["obama_2 with text"] = _with_text(images["obama_2"])
    images["biden 1 MP"] = _megapixel(images["biden"])
    images["jesper_3 1 MP"] = _megapixel(images["jesper_3"])
    return images


def measure_all() -> Values:
    context = ScoringContext(references=(as_image(load_rgb(REFERENCE)),))
    scorer = Scorer(use_case="headshot", score_all=True, context=context)
    out: Values = {}
    for name, rgb in golden_images().items():
        verdict = scorer.score(as_image(rgb))
        out[name] = {s.name: None if math.isnan(s.value) else s.value for s in verdict.scores}
    return out


@pytest.fixture(scope="module")
def measured() -> Values:
    return measure_all()


def _recorded() -> Values:
    values: Values = json.loads(GOLDEN.read_text())["values"]
    return values


def test_every_dimension_measured_as_recorded(measured: Values) -> None:
    recorded = _recorded()
    assert measured.keys() == recorded.keys()
    scorer = Scorer(
        use_case="headshot",
        score_all=True,
        context=ScoringContext(references=(as_image(load_rgb(REFERENCE)),)),
    )
    thresholds = scorer.thresholds
    directions = {d.name: d.direction for d in scorer.dimensions}
    moved = []
    for image, dims in recorded.items():
        assert measured[image].keys() == dims.keys(), image
        for dim, before in dims.items():
            now = measured[image][dim]
            if before is None or now is None:
                if before is not now:
                    moved.append(f"{image}/{dim}: {before} -> {now}")
                continue
            if not math.isclose(now, before, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                moved.append(f"{image}/{dim}: {before} -> {now}")
            at_threshold = math.isclose(before, thresholds[dim], rel_tol=REL_TOL, abs_tol=ABS_TOL)
            passes = directions[dim].passes
            if not at_threshold and passes(before, thresholds[dim]) != passes(now, thresholds[dim]):
                moved.append(f"{image}/{dim}: verdict changed ({before} -> {now})")
    assert not moved, "\n".join(moved)


def test_the_recording_covers_text_and_no_face() -> None:
    # The golden set must exercise OCR's reading path and a photo without a human face, or the
    # comparison above would say nothing about them.
    recorded = _recorded()
    assert (recorded["obama_2 with text"]["text_chars"] or 0) >= 8
    assert recorded["obama_2"]["text_chars"] == 0
    assert recorded["dog_donna"]["identity"] is None


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(
        json.dumps({"reference": REFERENCE, "values": measure_all()}, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {GOLDEN}")
