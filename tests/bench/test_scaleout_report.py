"""The scale-out benchmarks' Markdown: tables from runs, and blocks rewritten in place."""

from __future__ import annotations

from pathlib import Path

from imagefunnel.bench.load import LoadRun, LoadSettings
from imagefunnel.bench.ray_scaling import ScalingRun
from imagefunnel.bench.scaleout_report import load_markdown, ray_markdown, write_block


def _run(workers: int, images: int) -> LoadRun:
    return LoadRun(
        workers=workers,
        jobs_per_worker=6 // workers,
        window_s=10.0,
        jobs_ended=images // 2,
        jobs_not_delivered=1,
        delivered_images=images,
        failed_attempts=0,
        job_seconds=tuple(float(s) for s in range(1, 101)),
        peak_rss_mb=(500.0,) * workers,
    )


def test_the_load_table_gives_rates_ratios_and_tails() -> None:
    text = load_markdown(
        [_run(1, 20), _run(3, 30)], LoadSettings(workers=(1, 3)), command="imagefunnel bench load"
    )
    rows = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 3 ")]
    assert rows[0].split("|")[3:5] == [" 2.00 ", " 1.00 "]
    assert rows[1].split("|")[3:5] == [" 3.00 ", " 1.50 "]
    assert "| 50.5 | 99.0 |" in rows[0]  # p50 and p99 of 1..100 s
    assert "`imagefunnel bench load`" in text and "cores" in text


def test_the_ray_table_compares_each_executor_with_its_own_first_row() -> None:
    runs = [
        ScalingRun("ray", 1, 10, 5.0, 3.0),
        ScalingRun("ray", 2, 10, 2.5, 4.0),
        ScalingRun("threads", 1, 10, 4.0, 0.1),
    ]
    text = ray_markdown(runs, command="imagefunnel bench ray-scaling", use_case="generic")
    assert "| ray | 2 | 4.00 | 2.00 | 4.0 |" in text
    assert "| threads | 1 | 2.50 | 1.00 | 0.1 |" in text


def test_blocks_go_under_their_heading_and_are_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Routing\n\nrouting text\n\n## Scoring\n\nscoring text\n")
    write_block(doc, "load", "first")
    write_block(doc, "ray", "ray numbers")
    write_block(doc, "load", "second")
    text = doc.read_text()
    assert text.count("## Scale-out") == 1 and "first" not in text
    assert (
        text.index("scoring text")
        < text.index("## Scale-out")
        < text.index("second")
        < text.index("ray numbers")
    )
    assert "routing text" in text
