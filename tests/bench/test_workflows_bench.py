"""``bench workflows``: the three ways run on the emulated box and the block it writes is well-formed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from imagefunnel.bench.workflows import PATHS, markdown, run_workflows_bench, write_workflows_section


def test_bench_runs_every_way_and_writes_one_block_in_place(tmp_path: Path) -> None:
    report = run_workflows_bench(runs=2, seed=3)
    report = dataclasses.replace(
        report, command="imagefunnel bench workflows --runs 2 --write docs/benchmarks.md"
    )
    (result,) = report.workflows
    assert result.workflow == "empty-blur-save"
    assert tuple(p.path for p in result.paths) == PATHS
    assert all(len(p.ms) == 2 and min(p.ms) > 0 for p in result.paths)
    assert result.add_ms > 0

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\n<!-- bench other -->\nkept\n<!-- /bench other -->\n")
    write_workflows_section(doc, markdown(report))
    write_workflows_section(doc, markdown(report))  # rewritten in place, not appended twice
    text = doc.read_text()
    assert "kept" in text
    assert text.count("<!-- bench workflows -->") == 1 and text.count("<!-- /bench workflows -->") == 1
    (block,) = re.findall(r"<!-- bench workflows -->\n(.*?)<!-- /bench workflows -->", text, re.S)
    assert "Command: `imagefunnel bench workflows --runs 2 --write docs/benchmarks.md`" in block
    assert "Load average" in block
    rows = [line for line in block.splitlines() if line.startswith("| empty-blur-save |")]
    assert [row.split("|")[2].strip() for row in rows] == list(PATHS)
    header = next(line for line in block.splitlines() if line.startswith("| workflow |"))
    assert all(row.count("|") == header.count("|") for row in rows)
    assert "`workflows add`" in block
