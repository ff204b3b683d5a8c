"""check_quote on its own: every promise of a quote it can call broken, and the plan it can call changed."""

from __future__ import annotations

from imagefunnel.quote_check import QuoteRecord, check_quote
from quote_fixtures import job_result, quote


def test_a_job_within_its_quote_breaks_no_promise() -> None:
    check = check_quote(
        QuoteRecord(quote=quote(), source="run"),
        job_result(spent=0.15, candidates=9, delivered=4, attempts={"a": 8, "b": 1}),
        wall_s=8.0,
        wall_note="this run",
    )
    assert check.broken == [] and not check.plan_changed  # exactly at the p95 is within it
    assert check.quoted_providers == ["a", "b"] and check.used_providers == ["a", "b"]


def test_a_fallback_for_a_few_requests_is_said_but_keeps_the_plan() -> None:
    check = check_quote(
        QuoteRecord(quote=quote(), source="run"),
        job_result(spent=0.1, candidates=20, delivered=4, attempts={"a": 19, "c": 1}),
        wall_s=1.0,
        wall_note="this run",
    )
    assert not check.plan_changed
    assert check.plan_notes == ["c was not in the quoted plan and took 1 of 20 attempts (a fallback)"]


def test_every_figure_past_its_p95_is_said_plainly() -> None:
    check = check_quote(
        QuoteRecord(quote=quote(), source="run"),
        job_result(spent=0.30, candidates=12, delivered=3, attempts={"a": 12}),
        wall_s=20.0,
        wall_note="this run",
    )
    assert check.spend_usd.above_p95 and check.candidates.above_p95 and check.wall_s.above_p95
    assert check.broken == [
        "spend $0.3 is above the quoted p95 of $0.15 (expected $0.1)",
        "12 candidates is above the quoted p95 of 9 (expected 6.0)",
        "wall time 20.0s is above the quoted p95 of 8.0s (expected 5.0s; the quote counts provider latency and box queues, not scoring time)",
        "delivered 3 of 4; the quote gave P(deliver 4) = 0.970",
    ]
    assert not check.plan_changed  # b's 10 % share never came up: the plan was kept


def test_a_provider_outside_the_plan_or_a_main_one_left_out_changes_the_plan() -> None:
    check = check_quote(
        QuoteRecord(quote=quote(), source="run"),
        job_result(spent=0.1, candidates=6, delivered=4, attempts={"b": 5, "c": 1}),
        wall_s=1.0,
        wall_note="this run",
    )
    assert check.plan_changed
    assert check.plan_notes == [
        "c was not in the quoted plan and took 1 of 6 attempts",
        "a was quoted 90% of the requests and got none",
    ]
