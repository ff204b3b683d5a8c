"""Every benchmark block's recorded command still runs, shrunk to its smallest sizes.

``test_doc_commands`` only parses the commands; this runs each ``imagefunnel bench ... --write
docs/benchmarks.md`` command recorded in ``docs/benchmarks.md`` (found there, so a new block is
covered as soon as it is written) with the same subcommand, scenario and switches, its size options
overridden by ``SMALLEST`` and without ``--write``, in process, in a temporary folder. A subcommand
must be listed in ``SMALLEST`` or in ``SKIPPED``: a new benchmark fails here until it says which.

Skipped, because even their smallest honest configuration takes longer than the 15 s a command
may take here (measured with ``--write`` removed, 2 cores):

* ``bench crash`` (``--kills 1 --deliver 1``: 23 s): it kills worker processes with SIGKILL and
  resumes them, each a fresh interpreter, next to a baseline run;
* ``bench bg-removal`` (``--repeats 1 --concurrency 1 --boot-s 0``: 25 s): every photo in every
  mode over the HTTP emulators, with their modelled latencies waited out in wall-clock time;
* ``bench service`` (``--requests 1 --jobs 1 --pairs 2 --size 64``: 38 s): a real server, each
  concurrency level and the in-process/service pairs;
* ``bench ray-scaling`` (``--images 1 --workers 1``: 17 s): starting a local Ray instance alone
  takes most of it;
* ``bench load``: it needs a PostgreSQL server (``--store``) and starts worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from doc_commands import DocCommand, commands_in
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

# The smallest sizes each benchmark accepts (added where the recorded command leaves them out).
SMALLEST: dict[str, dict[str, str]] = {
    "routing": {
        "--jobs": "1",
        "--deliver": "1",
        "--e2e-jobs": "0",
        "--decisions": "0",
        "--calibration-samples": "1",
        "--size": "256",  # the calibration renders and scores one image per label at this size
        "--workers": "1",  # no process pool: the runs stay in this process
    },
    "quote": {"--jobs": "1", "--simulations": "100", "--calibration-samples": "1"},
    "workflows": {"--runs": "1"},
}
SKIPPED: dict[str, str] = {
    "crash": "kills and resumes worker processes: 23 s at --kills 1 --deliver 1",
    "bg-removal": "waits out the emulators' latencies: 25 s at --repeats 1",
    "service": "a real server at every concurrency level: 38 s at --requests 1 --jobs 1",
    "ray-scaling": "starts a local Ray instance: 17 s at --images 1",
    "load": "needs a PostgreSQL server and starts worker processes",
}


def shrink(argv: tuple[str, ...], sizes: dict[str, str]) -> tuple[str, ...]:
    """``argv`` without ``--write`` and with every option in ``sizes`` set to its value there."""
    out: list[str] = []
    rest = list(argv)
    while rest:
        token = rest.pop(0)
        name, eq, _ = token.partition("=")
        if name == "--write" or name in sizes:
            if not eq and rest:
                rest.pop(0)  # the option's value
            continue
        out.append(token)
    for name, value in sizes.items():
        out += [name, value]
    return tuple(out)


def _recorded() -> list[DocCommand]:
    return [
        c
        for c in commands_in(BENCHMARKS, source="docs/benchmarks.md", inline=True)
        if c.recorded and c.argv[:1] == ("bench",) and "--write" in c.argv and len(c.argv) > 1
    ]


def _cases() -> list[object]:
    cases: list[object] = []
    seen: set[tuple[str, ...]] = set()
    for command in _recorded():
        bench = command.argv[1]
        if bench in SKIPPED:
            argv = command.argv
            marks = [pytest.mark.skip(reason=f"bench {bench}: {SKIPPED[bench]}")]
        else:
            argv = shrink(command.argv, SMALLEST.get(bench, {}))
            marks = []
        if argv not in seen:  # two blocks may shrink to the same command
            seen.add(argv)
            cases.append(pytest.param(command, argv, id=command.where, marks=marks))
    return cases


def test_every_benchmark_says_how_small_it_runs() -> None:
    benches = {c.argv[1] for c in _recorded()}
    assert benches >= {"routing", "quote", "workflows", "crash"}
    unknown = benches - SMALLEST.keys() - SKIPPED.keys()
    assert not unknown, f"give SMALLEST sizes (or a SKIPPED reason) for: {', '.join(sorted(unknown))}"


def test_shrink_overrides_sizes_and_drops_write() -> None:
    argv = (
        "bench",
        "routing",
        "--scenario",
        "calm",
        "--jobs",
        "40",
        "--write=docs/benchmarks.md",
        "--no-litellm",
    )
    assert shrink(argv, {"--jobs": "1", "--decisions": "0"}) == (
        "bench",
        "routing",
        "--scenario",
        "calm",
        "--no-litellm",
        "--jobs",
        "1",
        "--decisions",
        "0",
    )


@pytest.mark.slow
@pytest.mark.parametrize(("command", "argv"), _cases())
def test_benchmark_command_runs(
    command: DocCommand, argv: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefunnel.cli.app import app

    for name in [k for k in os.environ if k.startswith("IMAGEFUNNEL_")]:
        monkeypatch.delenv(name)
    for name, value in command.env:
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, list(argv))
    assert result.exit_code == 0, f"{command}\n  shrunk to {' '.join(argv)}:\n{result.output[-3000:]}"
    assert not (tmp_path / "docs").exists()  # nothing was written as a block
