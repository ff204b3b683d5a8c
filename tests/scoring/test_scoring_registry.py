"""Registry, metadata validation and verdict records."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.scoring import (
    DimensionInfo,
    DimensionScore,
    Direction,
    ImageFeatures,
    Need,
    ScorerRegistry,
    ScoringContext,
    Verdict,
    default_registry,
)

INFO = DimensionInfo(
    name="widget_count",
    tier=2,
    direction=Direction.HIGHER_IS_BETTER,
    value_range=(0.0, 10.0),
    unit="widgets",
    default_threshold=3.0,
    cost=5.0,
    fail_label="too few widgets",
    description="How many widgets are visible.",
    needs=frozenset({Need.PROMPT}),
)


def test_register_by_decorator_returns_the_function_unchanged() -> None:
    registry = ScorerRegistry()

    @registry.register(INFO)
    def widget_count(features: ImageFeatures, context: ScoringContext) -> float:
        return 4.0

    assert registry.get("widget_count").measure is widget_count
    assert registry.get("widget_count").info is INFO
    assert "widget_count" in registry and len(registry) == 1


def test_duplicate_registration_is_refused() -> None:
    registry = ScorerRegistry()
    registry.add(INFO, lambda f, c: 1.0)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(INFO, lambda f, c: 2.0)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        SpecError, match=r"unknown scoring dimension 'sharpnes'; did you mean 'sharpness'( or '\w+')?\?"
    ):
        default_registry.get("sharpnes")
    with pytest.raises(SpecError, match=r"known: .*blockiness.*uniformity"):
        default_registry.get("zzz")


def test_names_are_cheapest_first_and_filter_by_tier() -> None:
    registry = default_registry.copy()
    registry.add(INFO, lambda f, c: 1.0)
    costs = [registry.get(n).info.cost for n in registry.names()]
    assert costs == sorted(costs)
    assert registry.names()[0] == "decodable"
    assert "widget_count" not in registry.names(tier=1)
    assert set(registry.names(tier=2)) - set(default_registry.names(tier=2)) == {"widget_count"}
    assert "widget_count" not in default_registry  # copy() is independent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "lower_snake_case"),
        ({"tier": 4}, "tier must be 1, 2 or 3"),
        ({"value_range": (1.0, 1.0)}, "empty"),
        ({"default_threshold": 11.0}, r"threshold for widget_count must be a number in \[0, 10\]"),
        ({"default_threshold": math.nan}, "threshold"),
        ({"cost": -1.0}, "cost"),
        ({"direction": "higher_is_better"}, "must be a Direction"),
    ],
)
def test_dimension_info_validates_its_fields(change: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError, SpecError), match=message):
        replace(INFO, **change)  # type: ignore[arg-type]


def test_context_reports_missing_inputs() -> None:
    assert ScoringContext().missing({Need.PROMPT, Need.FACE}) == {Need.PROMPT}
    assert ScoringContext(prompt="a headshot").missing({Need.PROMPT}) == frozenset()
    assert ScoringContext().missing({Need.REFERENCE}) == {Need.REFERENCE}


def judge(value: float, direction: Direction, threshold: float = 0.08) -> DimensionScore:
    return DimensionScore.judge(
        name="sharpness", tier=1, value=value, threshold=threshold, direction=direction, fail_label="blurry"
    )


def test_reasons_name_value_threshold_and_meaning() -> None:
    assert judge(0.031, Direction.HIGHER_IS_BETTER).reason == "sharpness 0.031 < 0.080 (blurry)"
    assert judge(0.412, Direction.HIGHER_IS_BETTER).reason == "sharpness 0.412 ≥ 0.080 ok"
    assert judge(0.09, Direction.LOWER_IS_BETTER).reason == "sharpness 0.090 > 0.080 (blurry)"
    assert judge(0.08, Direction.LOWER_IS_BETTER).passed  # on the threshold passes
    nan = judge(math.nan, Direction.HIGHER_IS_BETTER)
    assert not nan.passed and "could not be measured" in nan.reason


def test_verdict_helpers() -> None:
    bad = judge(0.031, Direction.HIGHER_IS_BETTER)
    good = replace(judge(0.5, Direction.HIGHER_IS_BETTER), name="other")
    verdict = Verdict.of((good, bad), skipped=("noise",))
    assert not verdict.passed
    assert verdict.failed == (bad,)
    assert verdict.reasons == ("sharpness 0.031 < 0.080 (blurry)",)
    assert verdict.get("other") is good and verdict.get("noise") is None
    assert verdict.value("sharpness") == pytest.approx(0.031)
    with pytest.raises(KeyError, match="skipped: noise"):
        verdict.value("noise")


def test_verdict_refuses_inconsistent_or_empty_records() -> None:
    with pytest.raises(ValueError, match="passed must be True exactly"):
        Verdict(passed=True, scores=(judge(0.0, Direction.HIGHER_IS_BETTER),))
    with pytest.raises(ValueError, match="at least one"):
        Verdict(passed=True, scores=())
