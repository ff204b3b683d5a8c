"""`imagefunnel dimensions` lists what every dimension measures and what it takes to pass."""

from __future__ import annotations

import json
import subprocess
import sys

from imagefunnel.scoring import default_registry


def dimensions(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", "dimensions", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "240", "PATH": "/usr/bin:/bin"},
    )


def test_json_lists_every_dimension_of_a_use_case_with_its_threshold() -> None:
    done = dimensions("--use-case", "product", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}  # strict JSON: no Infinity
    assert set(rows) == set(default_registry.names(use_case="product"))
    assert "face_margin" not in rows and "product_centering" in rows  # its own, not the headshot tier
    blockiness = rows["blockiness"]
    assert blockiness["tier"] == 1 and blockiness["direction"] == "lower is better"
    assert blockiness["range"] == [1.0, None]
    assert blockiness["default_threshold"] == default_registry.get("blockiness").info.default_threshold


def test_the_table_shows_tier_direction_threshold_and_a_line_on_what_it_measures() -> None:
    done = dimensions("--use-case", "headshot")
    assert done.returncode == 0, done.stderr
    count = len(default_registry.names(use_case="headshot"))
    assert f"{count} dimensions for use case headshot" in done.stdout
    line = next(row for row in done.stdout.splitlines() if row.startswith("│ face_margin "))
    assert "lower is better" in line or "higher is better" in line
    assert "headshot" in line


def test_flags_read_as_flags_in_help() -> None:
    done = dimensions("--help")
    assert done.returncode == 0
    line = next(row for row in done.stdout.splitlines() if "--json" in row)
    assert "<bool>" not in line and "BOOLEAN" not in line  # a flag takes no value
