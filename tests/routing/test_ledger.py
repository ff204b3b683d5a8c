from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from imagefunnel.routing import SpendBook, reconcile


@dataclass
class Row:
    job_id: str
    provider: str
    status: str
    quoted_usd: float
    charged_usd: float | None
    started_at: datetime


DAY1, DAY2 = datetime(2026, 11, 25, 23, 0, tzinfo=UTC), datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
ROWS = [
    Row("j1", "a", "succeeded", 0.02, 0.025, DAY1),
    Row("j1", "b", "failed", 0.03, 0.0, DAY1),
    Row("j2", "a", "succeeded", 0.02, 0.02, DAY2),
    Row("j2", "a", "dispatched", 0.02, None, DAY2),  # in flight: counted at its quote
]


def test_reconcile_by_provider_separates_expected_from_failures() -> None:
    a, b = reconcile(ROWS, by="provider")
    assert (a.key, a.attempts, a.succeeded) == ("a", 3, 2)
    assert a.expected_usd == pytest.approx(0.04)
    assert a.charged_succeeded_usd == pytest.approx(0.045)
    assert a.drift_usd == pytest.approx(0.005)
    assert a.drift_pct == pytest.approx(12.5)
    assert a.charged_usd == pytest.approx(0.065), "the in-flight attempt counts at its quote"
    assert (b.expected_usd, b.charged_usd) == (0.0, 0.0)


def test_reconcile_by_job_and_utc_day() -> None:
    assert [line.key for line in reconcile(ROWS, by="job")] == ["j1", "j2"]
    days = reconcile(ROWS, by="day")
    assert [(line.key, line.attempts) for line in days] == [("2026-11-25", 2), ("2026-11-26", 2)]


def test_spend_book_tallies_dispatch_and_settlement() -> None:
    book = SpendBook()
    book.dispatched(job_id="j", request_id="r1", attempt=1, provider="a", quoted_usd=0.02)
    book.dispatched(job_id="j", request_id="r1", attempt=2, provider="b", quoted_usd=0.03)
    book.settled(request_id="r1", attempt=1, status="failed", charged_usd=0.0)
    (open_line,) = [line for line in book.report(by="provider") if line.key == "b"]
    assert open_line.charged_usd == pytest.approx(0.03), "unsettled: counted at the quote"
    book.settled(request_id="r1", attempt=2, status="succeeded", charged_usd=0.031)
    (line,) = book.report(by="job")
    assert (line.attempts, line.succeeded, line.expected_usd) == (2, 1, pytest.approx(0.03))
    assert book.charged_usd == pytest.approx(0.031)
