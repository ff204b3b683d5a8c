"""The ``Server-Timing`` header: what the service writes, and reading it back."""

from __future__ import annotations

from imagefunnel.service.timing import Spans, parse_server_timing


def test_spans_add_up_by_name_and_total_covers_them() -> None:
    spans = Spans()
    with spans.span("store"):
        pass
    with spans.span("score"):
        sum(range(10_000))
    with spans.span("store"):
        pass
    timing = parse_server_timing(spans.header())
    assert list(timing) == ["store", "score", "total"]
    assert timing["total"] >= timing["store"] + timing["score"] > 0


def test_parse_reads_dur_and_skips_entries_without_it() -> None:
    value = 'cache;desc="hit", db;dur=53.2, app;desc="x";dur=47, bad;dur=abc, ;dur=1'
    assert parse_server_timing(value) == {"db": 53.2, "app": 47.0}
