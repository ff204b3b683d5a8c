"""Shared face analysis: what the models find on real portraits, laziness, caching, threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from scoring_fixtures import HUMANS, Rgb, as_image

from imagefunnel.scoring import faces
from imagefunnel.scoring.faces import (
    FaceAnalysis,
    FaceBox,
    FaceModels,
    FaceModelsUnavailable,
    fit_for_analysis,
    require_face_models,
)


class CountingModels(FaceModels):
    """Real models; counts how often each one is run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {"detector": 0, "mesh": 0, "segmenter": 0}
        self._count_lock = threading.Lock()

    def _counted(self, name: str, model: Any) -> Any:
        models = self

        class Wrapper:
            def process(self, rgb: Rgb) -> Any:
                with models._count_lock:
                    models.calls[name] += 1
                return model.process(rgb)

        return Wrapper()

    def detector(self) -> Any:
        return self._counted("detector", super().detector())

    def mesh(self) -> Any:
        return self._counted("mesh", super().mesh())

    def segmenter(self) -> Any:
        return self._counted("segmenter", super().segmenter())


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


def analyse(models: FaceModels, rgb: Rgb) -> FaceAnalysis:
    return models.analyse(fit_for_analysis(rgb))


@pytest.mark.parametrize("photo", HUMANS)
def test_each_portrait_has_one_face_with_a_full_mesh(
    photo: str, portraits: dict[str, Rgb], models: FaceModels
) -> None:
    analysis = analyse(models, portraits[photo])
    box = analysis.primary
    assert box is not None and box.score > 0.85
    assert 0.3 < box.height / analysis.height < 0.8
    marks = analysis.landmarks
    assert marks is not None and marks.shape == (478, 2)
    assert box.contains(*marks[faces.NOSE_TIP])
    assert len(analysis.meshes) == 1
    skin = analysis.skin_mask
    assert skin is not None and 0.03 < skin.mean() < 0.4
    # The person mask covers the face and leaves the corners (background) out.
    mask = analysis.person_mask
    cx, cy = (round(v) for v in box.centre)
    assert mask[cy, cx] > 0.8 and mask[0, 0] < 0.5


def test_the_dog_has_no_face(portraits: dict[str, Rgb], models: FaceModels) -> None:
    analysis = analyse(models, portraits["dog_donna"])
    assert analysis.detections == () and analysis.primary is None
    assert analysis.landmarks is None and analysis.skin_mask is None


def test_models_run_lazily_and_once_per_image(portraits: dict[str, Rgb]) -> None:
    models = CountingModels()
    analysis = analyse(models, portraits["biden"])
    assert models.calls == {"detector": 0, "mesh": 0, "segmenter": 0}
    for _ in range(3):
        assert analysis.primary is not None
    assert models.calls == {"detector": 1, "mesh": 0, "segmenter": 0}
    for _ in range(3):
        assert analysis.skin_mask is not None and analysis.landmarks is not None
    assert models.calls == {"detector": 1, "mesh": 1, "segmenter": 0}
    assert analysis.person_mask is analysis.person_mask
    assert models.calls == {"detector": 1, "mesh": 1, "segmenter": 1}


def test_reference_photos_are_analysed_once_per_models(portraits: dict[str, Rgb]) -> None:
    models = CountingModels()
    image = as_image(portraits["obama_1"])
    first = models.reference(image)
    assert models.reference(as_image(portraits["obama_1"])) is first  # same pixels, same analysis
    assert models.reference(as_image(portraits["obama_2"])) is not first
    for _ in range(4):
        assert models.reference(image).primary is not None
    assert models.calls["detector"] == 1
    assert FaceModels().reference(image) is not first  # another job, its own analyses


def test_threads_get_their_own_graphs_and_agree_with_one_thread(portraits: dict[str, Rgb]) -> None:
    models = FaceModels()
    photos = [portraits[p] for p in ("biden", "obama_1", "jesper_2", "astronaut")] * 2
    alone = [analyse(FaceModels(), rgb).landmarks for rgb in photos]
    both_running = threading.Barrier(2)

    def graph(_: int) -> int:
        both_running.wait(timeout=30)  # make sure the two calls run on two threads
        return id(models.mesh())

    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda rgb: analyse(models, rgb).landmarks, photos))
        graphs = set(pool.map(graph, range(2)))
    for a, b in zip(alone, together, strict=True):
        assert a is not None and b is not None
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert len(graphs) == 2  # one mesh graph per worker thread, never shared


def test_shared_analysis_runs_each_model_once_under_concurrency(portraits: dict[str, Rgb]) -> None:
    models = CountingModels()
    analysis = analyse(models, portraits["grace_hopper"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: analysis.skin_mask, range(8)))
    assert models.calls["mesh"] == 1 and models.calls["detector"] == 1


def test_boxes() -> None:
    a = FaceBox(0, 0, 10, 10, 0.9)
    assert a.iou(a) == 1.0
    assert a.iou(FaceBox(5, 0, 15, 10, 0.9)) == pytest.approx(50 / 150)
    assert a.iou(FaceBox(20, 20, 30, 30, 0.9)) == 0.0
    assert a.contains(5, 5) and not a.contains(11, 5)


def test_analysis_copy_is_never_enlarged(portraits: dict[str, Rgb]) -> None:
    small = portraits["astronaut"]
    assert fit_for_analysis(small) is small
    big = np.zeros((1024, 768, 3), np.uint8)
    assert fit_for_analysis(big).shape == (512, 384, 3)


def test_missing_models_are_reported_before_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    require_face_models(identity=True)  # installed here, as by `make install`
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FaceModelsUnavailable, match=r"mediapipe.*make install"):
        require_face_models()
