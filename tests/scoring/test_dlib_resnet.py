"""Our forward pass of dlib's face descriptor network: same numbers as dlib, and dlib when the file is not ours."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
from scoring_fixtures import HUMANS, Rgb, as_image

from imagefunnel.scoring import identity
from imagefunnel.scoring.dlib_resnet import CHIP_SIZE, DlibNetFormatError, FaceNet, read_face_net
from imagefunnel.scoring.faces import FaceModels
from imagefunnel.scoring.identity import descriptor, model_dir

dlib = pytest.importorskip("dlib")

TOLERANCE = 1e-4  # per component; the descriptors are ~0.1 in size
THRESHOLD = 0.6  # dlib's same-person cut


@pytest.fixture(scope="module")
def model_file() -> Path:
    return model_dir() / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def net(model_file: Path) -> FaceNet:
    return read_face_net(model_file)


@pytest.fixture(scope="module")
def encoder(model_file: Path) -> object:
    return dlib.face_recognition_model_v1(str(model_file))


def _chips(portraits: dict[str, Rgb]) -> dict[str, np.ndarray]:
    """The 150x150 chip of each human portrait, cut by dlib from its 5-point shape."""
    folder = model_dir()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    models = FaceModels()
    chips = {}
    for name in HUMANS:
        analysis = models.reference(as_image(portraits[name]))
        box = analysis.primary
        assert box is not None, name
        rgb = np.ascontiguousarray(analysis.rgb)
        rect = dlib.rectangle(round(box.left), round(box.top), round(box.right), round(box.bottom))
        chips[name] = np.asarray(dlib.get_face_chip(rgb, predictor(rgb, rect), size=CHIP_SIZE, padding=0.25))
    return chips


def test_forward_pass_matches_dlib_on_face_chips(
    portraits: dict[str, Rgb], net: FaceNet, encoder: object
) -> None:
    chips = _chips(portraits)
    chips["noise"] = np.random.default_rng(7).integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    assert len(chips) >= 5
    for name, chip in chips.items():
        theirs = np.asarray(encoder.compute_face_descriptor(chip))  # type: ignore[attr-defined]
        mine = net.describe(chip)
        assert mine.shape == (128,)
        assert float(np.max(np.abs(mine - theirs))) <= TOLERANCE, name


def _descriptors(portraits: dict[str, Rgb]) -> dict[str, np.ndarray]:
    models = FaceModels()
    found = {name: descriptor(models.reference(as_image(portraits[name]))) for name in HUMANS}
    return {name: d for name, d in found.items() if d is not None}


def test_identity_gives_dlibs_descriptors_and_verdicts_and_falls_back_to_dlib(
    portraits: dict[str, Rgb], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ours = _descriptors(portraits)

    def refuse(path: Path) -> FaceNet:
        raise DlibNetFormatError("expected a convolution (con_4), found 'con_9'")

    # a model file our reader refuses: dlib's own network runs, after one warning
    monkeypatch.setattr(identity, "read_face_net", refuse)
    monkeypatch.setattr(identity, "_NETS", {})
    with caplog.at_level(logging.WARNING, logger=identity.__name__):
        theirs = _descriptors(portraits)
    warnings = [r for r in caplog.records if r.name == identity.__name__]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "con_9" in warnings[0].getMessage() and "dlib computes" in warnings[0].getMessage()
    assert list(identity._NETS.items()) == [(model_dir() / "dlib_face_recognition_resnet_model_v1.dat", None)]

    assert sorted(ours) == sorted(theirs) and len(ours) >= 4
    assert any(not np.array_equal(ours[n], theirs[n]) for n in ours)  # two computations, not one
    for name in ours:
        assert float(np.max(np.abs(ours[name] - theirs[name]))) <= TOLERANCE, name
    for a, b in itertools.combinations(sorted(ours), 2):
        mine = float(np.linalg.norm(ours[a] - ours[b]))
        dlibs = float(np.linalg.norm(theirs[a] - theirs[b]))
        assert (mine < THRESHOLD) == (dlibs < THRESHOLD), (a, b, mine, dlibs)
        assert abs(mine - dlibs) <= 1e-4, (a, b)


def _variant(data: bytes, case: str) -> bytes:
    """The model file made into a file the reader must refuse."""
    start = data.index(b"con_4")
    return {
        "empty": lambda: b"",
        "ends after the loss layer": lambda: data[:40],
        "ends inside the input layer": lambda: data[: data.index(b"input_rgb_image_sized") + 10],
        "ends inside a tensor": lambda: data[: start + 200],
        "one byte short": lambda: data[:-1],
        "a byte too many": lambda: data + b"\x00",
        "another layer version": lambda: data[:start] + b"con_9" + data[start + 5 :],
        "another network (no max pool)": lambda: data.replace(b"max_pool_2", b"avg_pool_2", 1),
    }[case]()


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "ends after the loss layer",
        "ends inside the input layer",
        "ends inside a tensor",
        "one byte short",
        "a byte too many",
        "another layer version",
        "another network (no max pool)",
    ],
)
def test_a_file_it_does_not_know_raises_format_error(model_file: Path, tmp_path: Path, case: str) -> None:
    path = tmp_path / "net.dat"
    path.write_bytes(_variant(model_file.read_bytes(), case))
    with pytest.raises(DlibNetFormatError):
        read_face_net(path)


def test_a_missing_file_raises_format_error(tmp_path: Path) -> None:
    with pytest.raises(DlibNetFormatError, match="cannot read"):
        read_face_net(tmp_path / "missing.dat")


def test_the_network_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = identity.read_face_net

    def counting(path: Path) -> FaceNet:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(identity, "read_face_net", counting)
    monkeypatch.setattr(identity, "_NETS", {})
    path = model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    first = identity._face_net(path)
    assert first is not None and identity._face_net(path) is first
    assert calls == [path]
