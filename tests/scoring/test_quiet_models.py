"""The face models' native log lines never reach the terminal (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np
from imagefunnel.evaluation.photos import photo
from imagefunnel.scoring.faces import FaceModels
models = FaceModels()
for name in ("obama_1", "biden"):
    rgb = np.ascontiguousarray(photo(name).rgb[:, :-40])  # not square: the mesh warns once on those
    analysis = models.analyse(rgb)
    assert analysis.primary is not None and analysis.landmarks is not None
    analysis.person_mask
print("analysed")
"""


def test_mediapipe_and_tflite_log_lines_are_silenced() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "analysed"
    for noise in (
        "W0000",
        "inference_feedback_manager",
        "XNNPACK",
        "absl::InitializeLog",
        "landmark_projection",
    ):
        assert noise not in done.stderr, done.stderr
