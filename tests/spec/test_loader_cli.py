"""What a user sees when `imagefunnel run` meets a bad spec: exit code 2 and one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.spec import load_spec


def run(spec: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "bad.yaml").write_text(spec, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", "run", "bad.yaml", "--out", "out"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            "name: x\nprompts: [a\ndeliver: 2\n",
            "error: bad.yaml:3:8: expected ',' or ']', but got ':' (while parsing a flow sequence at 2:10)",
        ),
        (
            "name: x\nprompts: [a]\nbudget_usd: 1\ndelivr: 2\n",
            "error: bad.yaml:4:1: delivr: is not a known field (did you mean 'deliver'?) (+1 more)",
        ),
        (
            'a0: &a0 "lol"\n'
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)),
            "error: bad.yaml:1:5: YAML anchors (&a0) are not accepted: write the value out",
        ),
    ],
)
def test_a_bad_spec_is_one_error_line_and_exit_code_2(tmp_path: Path, spec: str, line: str) -> None:
    done = run(spec, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [line]
    assert not (tmp_path / "out").exists()


def test_a_spec_path_that_is_a_pipe_or_a_device_is_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero")):
        with pytest.raises(SpecError, match=r"cannot read spec: is a (named pipe|character device)"):
            load_spec(target)
