"""Tier 3: the spec's custom rules, judged against the dimensions already measured.

A rule is parsed data (``dimension op number``, or ``all``/``any`` lists of rules), never code. Each
top-level rule adds one ``rule:<name>`` score to the verdict. A ``reject`` rule that fails fails the
candidate; a ``warn`` rule is recorded as passing, with the warning in its reason.

Rules are judged in three-valued logic: a comparison over a dimension that was skipped (after an
earlier failure, or because it cannot run here) is *unknown*, not failed; one over a dimension the
scorer never measures fails, so that a reject rule never passes unseen. ``all`` fails as soon as one
known item fails and is otherwise unknown while any item is; ``any`` passes as soon as one known item
passes. A rule that ends unknown is listed in ``Verdict.skipped``, like the dimension it needed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import Enum

from imagefunnel.errors import SpecError
from imagefunnel.scoring.registry import did_you_mean
from imagefunnel.scoring.verdict import DimensionScore, Direction, Verdict
from imagefunnel.spec import Rule

__all__ = ["apply_rules", "check_rules", "rule_dimensions", "score_name"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


class _State(Enum):
    PASS = "ok"
    FAIL = "failed"
    UNKNOWN = "not measured"


@dataclass(frozen=True, slots=True)
class _Outcome:
    state: _State
    detail: str  # why, in words: "brightness = 70 (needs >= 100)"


def score_name(rule: Rule) -> str:
    """The name of a rule's score in a verdict: ``rule:<name or text>``."""
    return f"rule:{rule.label}"


def rule_dimensions(rules: Sequence[Rule]) -> tuple[str, ...]:
    """Every dimension the rules read, in order of appearance, each once."""
    return tuple(dict.fromkeys(name for rule in rules for name in rule.dimensions))


def check_rules(rules: Sequence[Rule], *, known: Collection[str]) -> None:
    """Raise SpecError (with a did-you-mean hint) for the first rule naming an unknown dimension.

    Called when a job's scorer is built, so that a typo fails the job at submission.
    """
    for index, rule in enumerate(rules):
        for name in rule.dimensions:
            if name not in known:
                raise SpecError(
                    f"rules[{index}] ({rule.label!r}): unknown dimension {name!r}; {did_you_mean(name, known)}",
                    field=f"rules[{index}]",
                )


def _compare(rule: Rule, verdict: Verdict) -> _Outcome:
    measured = verdict.get(rule.dimension)
    if measured is None and rule.dimension in verdict.skipped:
        return _Outcome(_State.UNKNOWN, f"{rule.dimension} was not measured")
    if measured is None:  # never requested: a reject rule must not pass unseen
        return _Outcome(_State.FAIL, f"{rule.dimension} is not scored by this scorer")
    value = measured.value
    ok = not math.isnan(value) and _OPS[rule.op](value, rule.value)
    state = _State.PASS if ok else _State.FAIL
    return _Outcome(state, f"{rule.dimension} = {value:.4g} (needs {rule.op} {rule.value:g})")


def _evaluate(rule: Rule, verdict: Verdict) -> _Outcome:
    if rule.expr is not None:
        return _compare(rule, verdict)
    outcomes = [_evaluate(child, verdict) for child in rule.children or ()]
    states = {outcome.state for outcome in outcomes}
    # all: one failure decides; any: one pass decides. Otherwise an unknown item leaves it unknown.
    decisive, other = (_State.FAIL, _State.PASS) if rule.mode == "all" else (_State.PASS, _State.FAIL)
    if decisive in states:
        state = decisive
    elif _State.UNKNOWN in states:
        state = _State.UNKNOWN
    else:
        state = other
    shown = [o for o in outcomes if o.state is state] or outcomes
    detail = f"{rule.mode}: " + "; ".join(o.detail for o in shown)
    return _Outcome(state, detail)


def _score(rule: Rule, verdict: Verdict, outcome: _Outcome) -> DimensionScore:
    ok = outcome.state is _State.PASS
    if rule.expr is not None:
        measured = verdict.get(rule.dimension)
        value = measured.value if measured is not None else float("nan")
        threshold = rule.value
        direction = Direction.LOWER_IS_BETTER if rule.op in ("<", "<=") else Direction.HIGHER_IS_BETTER
    else:  # a combination has no single value: report it as a boolean 1 (held) or 0 (did not)
        value, threshold, direction = float(ok), 1.0, Direction.HIGHER_IS_BETTER
    reason = f"rule '{rule.label}' {outcome.state.value}: {outcome.detail}"
    if not ok and rule.severity == "warn":
        return DimensionScore(score_name(rule), 3, value, threshold, direction, True, f"warning: {reason}")
    return DimensionScore(score_name(rule), 3, value, threshold, direction, ok, reason)


def apply_rules(verdict: Verdict, rules: Sequence[Rule]) -> Verdict:
    """The verdict with one extra tier-3 score per rule.

    A rule whose outcome depends on a dimension that was not measured (the candidate had already
    failed, or the dimension cannot run here) is skipped, not failed. Idempotent: a rule already
    judged in ``verdict`` (by a :class:`Scorer` built with the rules) is not judged again.
    """
    done = {s.name for s in verdict.scores} | set(verdict.skipped)
    rules = [rule for rule in rules if score_name(rule) not in done]
    if not rules:
        return verdict
    extra: list[DimensionScore] = []
    skipped = list(verdict.skipped)
    for rule in rules:
        outcome = _evaluate(rule, verdict)
        if outcome.state is _State.UNKNOWN:
            skipped.append(score_name(rule))
        else:
            extra.append(_score(rule, verdict, outcome))
    return Verdict.of((*verdict.scores, *extra), tuple(skipped))
