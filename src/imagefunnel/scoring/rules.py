"""Tier 3: the spec's custom rules, judged against the dimensions already measured.

A rule is parsed data (``dimension op number``), never code. A ``reject`` rule that fails fails the
candidate; a ``warn`` rule is recorded as passing, with the warning in its reason.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from imagefunnel.scoring.verdict import DimensionScore, Direction, Verdict
from imagefunnel.spec import Rule

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def _judge(rule: Rule, measured: DimensionScore | None) -> DimensionScore:
    name = f"rule:{rule.name or rule.expr}"
    direction = Direction.LOWER_IS_BETTER if rule.op in ("<", "<=") else Direction.HIGHER_IS_BETTER
    if measured is None:
        ok = False
        value = float("nan")
        reason = f"rule '{rule.expr}': {rule.dimension} was not measured"
    else:
        value = measured.value
        ok = _OPS[rule.op](value, rule.value)
        state = "ok" if ok else "failed"
        reason = f"rule '{rule.expr}' {state}: {rule.dimension} = {value:.4g}"
    if not ok and rule.severity == "warn":
        return DimensionScore(name, 3, value, rule.value, direction, True, f"warning: {reason}")
    return DimensionScore(name, 3, value, rule.value, direction, ok, reason)


def apply_rules(verdict: Verdict, rules: Sequence[Rule]) -> Verdict:
    """The verdict with one extra tier-3 score per rule.

    Rules over a dimension that was skipped (the candidate already failed) are skipped too.
    """
    if not rules:
        return verdict
    extra: list[DimensionScore] = []
    skipped = list(verdict.skipped)
    for rule in rules:
        if rule.dimension in verdict.skipped:
            skipped.append(f"rule:{rule.name or rule.expr}")
            continue
        extra.append(_judge(rule, verdict.get(rule.dimension)))
    return Verdict.of((*verdict.scores, *extra), tuple(skipped))
