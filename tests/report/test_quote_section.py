"""The report's "Quoted vs actual" section: each figure against its quote, and the alarms."""

from __future__ import annotations

import re
from pathlib import Path

from imagefunnel.quote_check import QuoteRecord, check_quote
from imagefunnel.report import render_report
from imagefunnel.store import BlobStore
from quote_fixtures import job_result, quote


def _row(html: str, figure: str) -> str:
    found = re.search(rf'<tr data-figure="{figure}">(.*?)</tr>', html, re.S)
    assert found, figure
    return found.group(1)


def test_a_figure_above_its_p95_is_marked_and_named_in_the_banner(tmp_path: Path) -> None:
    result = job_result(spent=0.30, candidates=7, delivered=4, attempts={"a": 5, "c": 2})
    check = check_quote(QuoteRecord(quote=quote(), source="given"), result, wall_s=3.0, wall_note="this run")
    html = render_report(result, BlobStore(tmp_path), quote=check)
    spend = _row(html, "spend")
    assert 'class="over">$0.3<' in spend and "above the quoted p95" in spend
    assert "$0.1<" in spend and "$0.15<" in spend  # quoted expected and p95
    assert "above the quoted p95" not in _row(html, "candidates") + _row(html, "wall time")
    assert "Held to the quote given to the run" in html
    banner = re.search(r'id="quote-broken">(.*?)</span>', html, re.S)
    assert banner and "spend $0.3 is above the quoted p95 of $0.15" in banner.group(1)
    changed = re.search(r'id="plan-changed">(.*?)</span>', html, re.S)
    assert changed and "c was not in the quoted plan and took 2 of 7 attempts" in changed.group(1)


def test_a_job_that_kept_its_quote_raises_no_alarm_and_one_without_a_quote_has_no_section(
    tmp_path: Path,
) -> None:
    result = job_result(spent=0.1, candidates=6, delivered=4, attempts={"a": 6})
    check = check_quote(QuoteRecord(quote=quote(), source="run"), result, wall_s=3.0, wall_note="this run")
    html = render_report(result, BlobStore(tmp_path), quote=check)
    assert 'id="quote"' in html and "quote-broken" not in html and "plan-changed" not in html
    assert 'id="quote"' not in render_report(result, BlobStore(tmp_path))
