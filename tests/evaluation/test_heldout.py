"""Leave one person out: thresholds fitted without a person, judged on them."""

from __future__ import annotations

import pytest

from imagefunnel.evaluation import LabeledImage, ScoredImage
from imagefunnel.evaluation.heldout import Rate, fit_clean_quantile, headline, leave_one_person_out, wilson
from imagefunnel.scoring import DimensionInfo, Direction

INFO = DimensionInfo(
    name="noise",
    tier=1,
    direction=Direction.LOWER_IS_BETTER,
    value_range=(0.0, 100.0),
    unit="levels",
    default_threshold=50.0,
    cost=1.0,
    fail_label="noisy",
    description="test",
)


def item(source: str, value: float, defect: str | None = None, strength: float = 0.0) -> ScoredImage:
    file = f"{source}-{value}-{defect}.jpg"
    label = LabeledImage(
        file=file,
        source=source,
        variant="as_is",
        defect=defect,
        strength=strength,
        expect=("noise",) if defect else (),
    )
    return ScoredImage(label, {"noise": value})


def test_wilson_interval_is_sound_at_the_edges() -> None:
    low, high = wilson(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2
    low, high = wilson(20, 20)
    assert high == 1.0 and 0.8 < low < 0.9
    low, high = wilson(5, 10)
    assert low < 0.5 < high
    assert str(Rate(1, 4)).startswith("25.0% (1/4; 95%")


def test_clean_quantile_fit_pushes_the_edge_out_by_the_headroom() -> None:
    train = [item("a", v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    fitted = fit_clean_quantile({"noise": INFO}, quantile=1.0, headroom=0.5)(train)
    assert fitted["noise"] == pytest.approx(5.0 + 0.5 * (5.0 - 3.0))


def test_a_person_unlike_the_others_is_rejected_only_when_held_out() -> None:
    # Person "b" has noisier clean photos than anyone else: fitted on everyone, they pass; fitted
    # without them, they fail. That is the number a new customer's new faces would see.
    scored = [
        *(item("a", v) for v in (1.0, 1.5, 2.0)),
        *(item("c", v) for v in (1.2, 1.8)),
        *(item("b", v) for v in (4.0, 4.5)),
        item("a", 30.0, "noise_gaussian", 1.0),
        item("b", 30.0, "noise_gaussian", 1.0),
        item("c", 3.0, "noise_gaussian", 0.25),  # mild: not a hard defect
    ]
    fit = fit_clean_quantile({"noise": INFO}, quantile=1.0, headroom=0.1)
    held = leave_one_person_out(
        scored, fit=fit, directions={"noise": INFO.direction}, persons={"a": "A", "b": "B", "c": "C"}
    )
    assert held.in_sample_clean.part == 0 and held.in_sample_hard == Rate(2, 2)
    by_person = {p.person: p for p in held.people}
    assert by_person["B"].clean == Rate(2, 2) and by_person["A"].clean == Rate(0, 3)
    assert held.held_out_clean == Rate(2, 7) and held.held_out_hard == Rate(2, 2)
    assert held.worst_person is not None and held.worst_person.person == "B"
    clean, hard, which = headline(scored, {"noise": 2.0}, {"noise": INFO.direction})
    assert clean == Rate(2, 7) and hard == Rate(2, 2) and len(which) == 2
