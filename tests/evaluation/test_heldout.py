"""Leave one person out: thresholds fitted without a person, judged on them."""

from __future__ import annotations

import dataclasses

import pytest

from imagefunnel.evaluation import LabeledImage, ScoredImage
from imagefunnel.evaluation.heldout import (
    Rate,
    fit_clean_quantile,
    fit_validated_headroom,
    headline,
    leave_one_person_out,
    validated_headrooms,
    wilson,
)
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
    fitted = fit_clean_quantile({"noise": INFO}, quantile=1.0, headroom=0.5, persons={})(train)
    assert fitted["noise"] == pytest.approx(5.0 + 0.5 * (5.0 - 3.0))


def test_one_person_apart_from_the_rest_widens_the_fit_by_their_step() -> None:
    # Most clean photos measure 0 (a spike: no spread to scale a margin by); person E's reach 1.5.
    # A new person may lie beyond the seen ones by as much as E lay beyond the rest: D, at 2.0,
    # fitted without D, passes; the quantile and headroom alone would have rejected D.
    train = [*(item(s, 0.0) for s in ("a", "b", "c") for _ in range(20)), item("e", 1.5)]
    persons = {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E", "e2": "E"}
    fitted = fit_clean_quantile({"noise": INFO}, persons=persons)(train)
    assert fitted["noise"] == pytest.approx(1.5 + 1.5) and fitted["noise"] > 2.0
    spike_only = fit_clean_quantile({"noise": INFO}, persons=persons, beyond=0.0)(train)
    assert spike_only["noise"] < 2.0
    # Two photos of one person are one person: E's second photo does not make a step of its own.
    fitted = fit_clean_quantile({"noise": INFO}, persons=persons)([*train, item("e2", 1.0)])
    assert fitted["noise"] == pytest.approx(1.5 + 1.5)
    apart = fit_clean_quantile({"noise": INFO}, persons={})([*train, item("e2", 1.0)])
    assert apart["noise"] < 2.5  # each photo its own person: E2 is a step of 0.5, not E of 1.5


def test_higher_is_better_fit_widens_downwards() -> None:
    info = dataclasses.replace(INFO, direction=Direction.HIGHER_IS_BETTER)
    train = [*(item(s, 10.0) for s in ("a", "b") for _ in range(10)), item("c", 8.0)]
    fitted = fit_clean_quantile({"noise": info}, persons={"a": "A", "b": "B", "c": "C"})(train)
    assert fitted["noise"] == pytest.approx(8.0 - 2.0)


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
    persons = {"a": "A", "b": "B", "c": "C"}
    fit = fit_clean_quantile({"noise": INFO}, quantile=1.0, headroom=0.1, persons=persons)
    held = leave_one_person_out(scored, fit=fit, directions={"noise": INFO.direction}, persons=persons)
    assert held.in_sample_clean.part == 0 and held.in_sample_hard == Rate(2, 2)
    by_person = {p.person: p for p in held.people}
    assert by_person["B"].clean == Rate(2, 2) and by_person["A"].clean == Rate(0, 3)
    assert held.held_out_clean == Rate(2, 7) and held.held_out_hard == Rate(2, 2)
    assert held.worst_person is not None and held.worst_person.person == "B"
    clean, hard, which = headline(scored, {"noise": 2.0}, {"noise": INFO.direction})
    assert clean == Rate(2, 7) and hard == Rate(2, 2) and len(which) == 2


SPREAD = [float(v) for v in range(11)]  # 0..10: median 5, edge 10
PEOPLE = {"a": "A", "b": "B", "c": "C"}


def test_a_dimension_every_person_shares_keeps_the_narrowest_headroom() -> None:
    # Each person's clean photos span the same 0..10: no held-out person lands beyond the others, so
    # the margin narrows to the last candidate, and a defect at 12 that the fixed half-distance
    # margin (12.5) lets through is caught.
    train = [item(s, v) for s in PEOPLE for v in SPREAD]
    assert validated_headrooms(train, {"noise": INFO}, quantile=1.0, persons=PEOPLE) == {"noise": 0.3}
    fitted = fit_validated_headroom({"noise": INFO}, quantile=1.0, persons=PEOPLE)(train)
    assert fitted["noise"] == pytest.approx(10.0 + 0.3 * 5.0)
    fixed = fit_clean_quantile({"noise": INFO}, quantile=1.0, persons=PEOPLE)(train)
    assert fixed["noise"] == pytest.approx(12.5) and fitted["noise"] < 12.0 < fixed["noise"]
    deeper = validated_headrooms(
        train, {"noise": INFO}, candidates=(0.5, 0.2, 0.1), quantile=1.0, persons=PEOPLE
    )
    assert deeper == {"noise": 0.1}


def test_a_person_beyond_the_others_keeps_the_headroom_that_passed_them() -> None:
    # C's clean photos reach 12 where A's and B's stop at 10. Fitted without C, a headroom of 0.4
    # (10 + 0.4·5 = 12) still passes C's 12, 0.3 (11.5) does not: narrowing stops at 0.4.
    train = [*(item(s, v) for s in ("a", "b") for v in SPREAD), *(item("c", v) for v in [*SPREAD[:-1], 12.0])]
    assert validated_headrooms(train, {"noise": INFO}, quantile=1.0, persons=PEOPLE) == {"noise": 0.4}


def test_the_held_out_figure_includes_the_choice_of_headroom() -> None:
    # Fitted on everyone, the choice sees C and keeps 0.4: no clean image is rejected. Held out, C
    # is not there to widen it: A and B alone choose 0.3 (11.5), and C's 12 is rejected. That is what a new
    # person like C would meet, and what the held-out numbers must say.
    scored = [
        *(item(s, v) for s in ("a", "b") for v in SPREAD),
        *(item("c", v) for v in [*SPREAD[:-1], 12.0]),
    ]
    fit = fit_validated_headroom({"noise": INFO}, quantile=1.0, persons=PEOPLE)
    held = leave_one_person_out(scored, fit=fit, directions={"noise": INFO.direction}, persons=PEOPLE)
    assert held.in_sample_clean == Rate(0, 33)
    by_person = {p.person: p for p in held.people}
    assert by_person["C"].clean == Rate(1, 11) and by_person["A"].clean == Rate(0, 11)


def test_a_dimension_left_at_its_default_is_not_fitted() -> None:
    train = [item(s, v) for s in PEOPLE for v in SPREAD]
    fitted = fit_validated_headroom({"noise": INFO}, persons=PEOPLE, fixed=frozenset({"noise"}))(train)
    assert fitted == {"noise": INFO.default_threshold}
