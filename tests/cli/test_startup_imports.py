"""Listing the commands must not load what only some commands use: OpenCV, the models' runtimes,
the store. Checked on the modules a fresh process holds after ``imagefunnel --help``, not on time."""

from __future__ import annotations

import json
import subprocess
import sys

# The heavy libraries: each adds tenths of a second (or more) to a start-up that should feel instant.
HEAVY = ("cv2", "onnxruntime", "mediapipe", "dlib", "numpy", "sqlalchemy", "httpx", "starlette", "pydantic")

_PROBE = """
import json, sys
from typer.testing import CliRunner
from imagefunnel.cli.app import app
result = CliRunner().invoke(app, ["--help"])
print(json.dumps({"code": result.exit_code, "output": result.output, "modules": sorted(sys.modules)}))
"""


def _help_in_a_fresh_process() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_help_lists_every_command_without_importing_heavy_libraries() -> None:
    found = _help_in_a_fresh_process()
    assert found["code"] == 0
    modules = set(found["modules"])  # type: ignore[call-overload]
    loaded = [name for name in HEAVY if name in modules]
    assert loaded == [], f"`imagefunnel --help` imported {loaded}"
    output = str(found["output"])
    for command in (
        "demo",
        "run",
        "resume",
        "score",
        "quote",
        "eval",
        "devset",
        "dimensions",
        "bench",
        "jobs",
    ):
        assert command in output, command


def test_the_package_exports_load_on_first_use() -> None:
    import imagefunnel

    # Every public name still resolves (lazily), and to the object its module defines.
    from imagefunnel.scoring import Scorer

    assert imagefunnel.Scorer is Scorer
    for name in imagefunnel.__all__:
        assert getattr(imagefunnel, name) is not None, name
