"""The crash-and-resume harness, lean: `imagefunnel run` SIGKILLed at 3 seeded points of a K=4 job,
each resumed until it ends, its store checked against the billing log of the one market process
every job bought from (see ``imagefunnel.bench.crash``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefunnel.bench.crash import (
    CrashReport,
    CrashSettings,
    KillPoint,
    kill_points,
    run_crash_bench,
)
from imagefunnel.bench.crash_report import crash_markdown, write_block

pytestmark = pytest.mark.slow

# One more kill, placed in the window between the ledger settling a purchase and its image being
# stored. No uncrashed baseline: the kill points are drawn over the first 2K purchases.
WHILE_SCORING = KillPoint(index=4, after_purchases=1, delay_s=0.0, while_scoring=True)
SETTINGS = CrashSettings(kills=3, deliver=4, seed=3, baseline=False, targeted=(WHILE_SCORING,))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashReport]:
    yield run_crash_bench(SETTINGS, work_dir=tmp_path_factory.mktemp("crash"))


def test_kill_points_are_seeded_and_inside_the_job() -> None:
    points = kill_points(kills=20, purchases=84, max_delay_s=0.5, seed=7)
    assert points == kill_points(kills=20, purchases=84, max_delay_s=0.5, seed=7)
    assert points != kill_points(kills=20, purchases=84, max_delay_s=0.5, seed=8)
    assert all(1 <= p.after_purchases <= 84 and 0 <= p.delay_s <= 0.5 for p in points)
    assert [p.index for p in points] == list(range(1, 21))


def test_the_kills_land_mid_job(report: CrashReport) -> None:
    # The premise of the checks below: kills cut jobs off, the targeted one while an image was scored.
    assert len(report.points) == SETTINGS.kills + 1
    assert report.killed >= 2 and report.points[-1].killed
    assert all(p.resumes >= 1 for p in report.points if p.killed)


def test_every_resumed_job_delivers_k(report: CrashReport) -> None:
    assert [(p.status, p.delivered) for p in report.points] == [("delivered", 4)] * (SETTINGS.kills + 1)


def test_no_request_is_billed_or_bought_twice(report: CrashReport) -> None:
    assert report.double_charges == 0


def test_every_ledger_equals_its_share_of_the_billing_log(report: CrashReport) -> None:
    # Exactly, for every request the store had named. A kill inside the naming window (the provider
    # took the request, its id never reached the store: a busy machine widens it) is booked at its
    # quote: it may differ from the bill, but the ledger must never count less than was billed.
    for point in report.points:
        assert point.billed > 0
        assert point.mismatched_named == 0, point
        if point.unnamed_billed == 0 and point.closed_at_quote == 0:
            assert point.mismatched == 0, point
            assert point.ledger_usd == pytest.approx(point.billed_usd, abs=1e-9), point
        assert point.ledger_usd >= point.billed_usd - 1e-9, point


def test_no_billed_image_is_lost_at_the_seeded_points(report: CrashReport) -> None:
    # Resume fetches every image whose request it can name; only the naming window may lose one.
    assert sum(p.lost_named for p in report.points[: SETTINGS.kills]) == 0
    for point in report.points[: SETTINGS.kills]:
        assert point.candidates_lost <= point.unnamed_billed, point


def test_a_kill_while_an_image_is_scored_loses_no_candidate(report: CrashReport) -> None:
    assert report.points[-1].candidates_lost == 0


def test_the_report_has_a_row_per_point_and_replaces_its_block(report: CrashReport, tmp_path: Path) -> None:
    text = crash_markdown(report)
    assert "candidates lost" in text and "double charges" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + SETTINGS.kills + 1 and "while an image is scored" in rows[-1]
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Routing\n\ntext\n", encoding="utf-8")
    write_block(doc, "first")
    write_block(doc, "second")
    body = doc.read_text(encoding="utf-8")
    assert body.count("## Crash and resume") == 1 and "second" in body and "first" not in body
    assert body.startswith("# Benchmarks\n\n## Routing\n\ntext\n")


def test_the_recorded_command_leaves_out_the_scratch_folder() -> None:
    from imagefunnel.cli.crash_bench import _without_work

    args = ["--kills", "20", "--work", "/scratch", "--seed", "1", "--work=/other", "--write", "b.md"]
    assert _without_work(args) == ["--kills", "20", "--seed", "1", "--write", "b.md"]
