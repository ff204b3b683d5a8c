"""Tier-3 rules: the declarative language in the spec, its checks at job start, and its verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scoring_fixtures import Rgb, as_image

from imagefunnel.errors import SpecError
from imagefunnel.market import defects
from imagefunnel.scoring import (
    DimensionInfo,
    DimensionScore,
    Direction,
    ImageFeatures,
    Scorer,
    ScorerRegistry,
    ScoringContext,
    Verdict,
    default_registry,
)
from imagefunnel.scoring.rules import apply_rules, check_rules, rule_dimensions
from imagefunnel.spec import Rule, parse_spec

VALID = "prompts: [a headshot]\ndeliver: 2\nbudget_usd: 1\n"

NESTED = """\
rules:
  - eyes_open >= 0.25
  - {expr: 'text_area == 0', name: no_branding}
  - name: well_lit
    severity: warn
    any:
      - brightness >= 100
      - all: [sharpness >= 0.1, 'noise <= 3']
"""


def rule(value: object) -> Rule:
    return Rule.model_validate({"expr": value} if isinstance(value, str) else value)


def verdict_of(values: dict[str, float], skipped: tuple[str, ...] = ()) -> Verdict:
    scores = tuple(
        DimensionScore(name, 1, value, 0.0, Direction.HIGHER_IS_BETTER, True, f"{name} ok")
        for name, value in values.items()
    )
    return Verdict.of(scores, skipped)


# --- the language -------------------------------------------------------------------------------


def test_nested_rules_parse_from_yaml() -> None:
    spec = parse_spec(VALID + NESTED)
    first, branding, lit = spec.rules
    assert (first.dimension, first.op, first.value) == ("eyes_open", ">=", 0.25)
    assert branding.label == "no_branding" and branding.text == "text_area == 0"
    assert lit.mode == "any" and lit.severity == "warn"
    assert lit.dimensions == ("brightness", "sharpness", "noise")
    assert lit.text == "any(brightness >= 100, all(sharpness >= 0.1, noise <= 3))"
    assert rule_dimensions(spec.rules) == ("eyes_open", "text_area", "brightness", "sharpness", "noise")


@pytest.mark.parametrize(
    ("rules", "field", "line", "fragment"),
    [
        (
            "rules:\n  - any: [sharpness >= 0.1, make it pretty]\n",
            "rules[0].any[1].expr",
            5,
            "dimension >= number",
        ),
        (
            "rules:\n  - {expr: 'noise < 2', all: ['noise < 3']}\n",
            "rules[0]",
            5,
            "exactly one of expr, all or any",
        ),
        ("rules:\n  - {name: empty}\n", "rules[0]", 5, "found none of them"),
        ("rules:\n  - all: []\n", "rules[0]", 5, "'all' needs at least one rule"),
        (
            "rules:\n  - all:\n      - {expr: 'noise < 3', severity: warn}\n",
            "rules[0]",
            5,
            "top-level rule only",
        ),
        ("rules:\n  - {expr: 'noise < 3', level: high}\n", "rules[0].level", 5, "not a known field"),
        ("rules:\n  - sharpness => 0.1\n", "rules[0].expr", 5, "dimension >= number"),
        ("rules:\n  - __import__('os') > 1\n", "rules[0].expr", 5, "dimension >= number"),
    ],
)
def test_malformed_rules_name_field_and_line(rules: str, field: str, line: int, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(VALID + rules)
    assert info.value.field == field
    assert info.value.line == line
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text", ["noise<=3", " noise <= 3.0 ", "noise <= 3e0", "noise <= +3.", "noise <= .3e1"]
)
def test_number_forms(text: str) -> None:
    assert rule(text).value == 3.0


def test_a_combination_has_no_single_dimension() -> None:
    with pytest.raises(ValueError, match="combination, not one comparison"):
        _ = rule({"all": ["noise < 3"]}).dimension


# --- names are checked against the registry at job start ------------------------------------------


def test_unknown_dimension_is_a_spec_error_with_did_you_mean() -> None:
    rules = [rule("sharpness >= 0.1"), rule({"name": "lit", "any": ["brightnes > 90", "noise < 3"]})]
    with pytest.raises(
        SpecError, match=r"rules\[1\] \('lit'\): unknown dimension 'brightnes'; did you mean 'brightness'"
    ) as info:
        check_rules(rules, known=default_registry.names())
    assert info.value.field == "rules[1]"
    check_rules(rules[:1], known=default_registry.names())  # known names pass


def test_scorer_refuses_unknown_rule_dimensions_when_built() -> None:
    with pytest.raises(SpecError, match="did you mean 'text_area'"):
        Scorer(rules=[rule("text_aera == 0")])
    assert Scorer(rules=[rule("text_area == 0")]).rules[0].dimension == "text_area"


def test_scorer_measures_dimensions_that_only_rules_read(portraits: dict[str, Rgb]) -> None:
    scorer = Scorer(dimensions=["decodable", "brightness"], rules=[rule("sharpness >= 0.01")])
    assert "sharpness" in {d.name for d in scorer.dimensions}
    verdict = scorer.score(as_image(portraits["obama_1"]))
    assert verdict.passed and verdict.get("rule:sharpness >= 0.01") is not None


# --- judging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("eyes_open >= 0.25", True),
        ("eyes_open >= 0.31", False),
        ("skin_tone_stops <= 2", True),
        ("skin_tone_stops < 1.5", False),
        ("text_area == 0", True),
        ("text_area != 0", False),
        ("eyes_open > 0.3", False),
    ],
)
def test_comparisons_both_directions(text: str, passed: bool) -> None:
    verdict = apply_rules(
        verdict_of({"eyes_open": 0.3, "skin_tone_stops": 1.5, "text_area": 0.0}), [rule(text)]
    )
    score = verdict.get(f"rule:{rule(text).text}")
    assert score is not None and score.tier == 3
    assert score.passed is passed and verdict.passed is passed
    assert ("ok" if passed else "failed") in score.reason


def test_all_and_any_combine() -> None:
    values = verdict_of({"brightness": 70.0, "sharpness": 0.2, "noise": 2.0})
    ok = {"name": "lit", "any": ["brightness >= 100", {"all": ["sharpness >= 0.1", "noise <= 3"]}]}
    bad = {"name": "crisp", "all": ["sharpness >= 0.1", "brightness >= 100"]}
    verdict = apply_rules(values, [rule(ok), rule(bad)])
    assert verdict.value("rule:lit") == 1.0 and verdict.get("rule:lit").passed  # type: ignore[union-attr]
    failed = verdict.get("rule:crisp")
    assert failed is not None and not failed.passed and failed.value == 0.0
    assert "brightness = 70 (needs >= 100)" in failed.reason
    assert verdict.reasons == (failed.reason,)


def test_warn_records_a_warning_but_passes() -> None:
    verdict = apply_rules(verdict_of({"noise": 5.0}), [rule({"expr": "noise <= 3", "severity": "warn"})])
    assert verdict.passed
    assert verdict.scores[-1].reason.startswith("warning: rule 'noise <= 3' failed")


def test_unmeasured_dimensions_skip_rules_in_three_valued_logic() -> None:
    values = verdict_of({"noise": 5.0, "brightness": 120.0}, skipped=("sharpness",))
    rules = [
        rule("sharpness >= 0.1"),  # unknown: skipped like its dimension
        rule({"name": "all_known_fail", "all": ["sharpness >= 0.1", "noise <= 3"]}),  # a failure decides
        rule({"name": "all_unknown", "all": ["sharpness >= 0.1", "noise <= 9"]}),
        rule({"name": "any_known_pass", "any": ["sharpness >= 0.1", "brightness > 100"]}),  # a pass decides
        rule({"name": "any_unknown", "any": ["sharpness >= 0.1", "brightness > 200"]}),
    ]
    verdict = apply_rules(values, rules)
    assert verdict.skipped == ("sharpness", "rule:sharpness >= 0.1", "rule:all_unknown", "rule:any_unknown")
    assert not verdict.get("rule:all_known_fail").passed  # type: ignore[union-attr]
    assert verdict.get("rule:any_known_pass").passed  # type: ignore[union-attr]


def test_a_dimension_never_scored_fails_a_reject_rule() -> None:
    verdict = apply_rules(verdict_of({"noise": 1.0}), [rule("eyes_open >= 0.25")])
    assert not verdict.passed
    assert "eyes_open is not scored by this scorer" in verdict.reasons[0]


def test_rules_over_any_registered_dimension_run_in_the_scorer() -> None:
    registry = ScorerRegistry()
    for name, value in (("eyes_open", 0.12), ("skin_tone_stops", 0.8)):

        def measure(features: ImageFeatures, context: ScoringContext, value: float = value) -> float:
            return value

        info = DimensionInfo(
            name=name,
            tier=2,
            direction=Direction.HIGHER_IS_BETTER,
            value_range=(0.0, 10.0),
            unit="test",
            default_threshold=0.0,
            cost=1.0,
            fail_label="test double",
            description="a fixed value, to exercise the rules",
        )
        registry.add(info, measure)
    rules = [rule("eyes_open >= 0.25"), rule("skin_tone_stops <= 2")]
    scorer = Scorer(
        registry=registry, dimensions=["eyes_open", "skin_tone_stops"], rules=rules, score_all=True
    )
    verdict = scorer.score(as_image(np.zeros((32, 32, 3), dtype=np.uint8)))
    assert [(s.name, s.passed) for s in verdict.scores if s.tier == 3] == [
        ("rule:eyes_open >= 0.25", False),
        ("rule:skin_tone_stops <= 2", True),
    ]


def test_text_rule_on_real_photos(portraits: dict[str, Rgb]) -> None:
    scorer = Scorer(dimensions=["decodable"], rules=[rule({"expr": "text_area == 0", "name": "no_branding"})])
    clean = scorer.score(as_image(portraits["biden"]))
    branded = scorer.score(as_image(defects.text_overlay(portraits["biden"], 0.5)))
    assert clean.passed and clean.get("rule:no_branding") is not None
    # A dimension a rule reads is measured and judged on its own threshold too: rules only add.
    assert not branded.passed and [s.name for s in branded.failed] == ["text_area", "rule:no_branding"]


def test_applying_rules_twice_judges_them_once(portraits: dict[str, Rgb]) -> None:
    rules = [rule("sharpness >= 0.01"), rule({"name": "dark", "expr": "brightness < 10"})]
    scorer = Scorer(dimensions=["brightness", "sharpness"], rules=rules, score_all=True)
    verdict = scorer.score(as_image(portraits["obama_2"]))
    assert apply_rules(verdict, rules) == verdict  # what the funnel does after a rule-aware scorer
    assert [s.name for s in verdict.scores if s.tier == 3] == ["rule:sharpness >= 0.01", "rule:dark"]
