from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import AssetLibrary, Truth, plan_image, render
from imagefunnel.market.products import PRODUCT_DEFECTS


def plan(library: AssetLibrary, seed: int, **overrides: object) -> Truth:
    options: dict[str, object] = {
        "provider": "p",
        "library": library,
        "width": 512,
        "height": 512,
        "seed": seed,
        "image_format": "png",
        "defect_rate": 0.0,
        "defect_mix": {},
        "rng": derive_rng("test", seed),
    }
    return plan_image(**(options | overrides))


def decode(data: bytes) -> NDArray[np.uint8]:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def sharpness(img: NDArray[np.uint8]) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_library_holds_faces_only_and_prefers_large_sources(library: AssetLibrary) -> None:
    assert "dog_donna.jpg" not in library.names
    assert len(library.names) >= 8
    native = library.eligible(512, 512)
    assert "astronaut.jpg" not in native and "obama_1.jpg" in native
    assert set(library.eligible(256, 256)) > set(native)
    assert library.eligible(2048, 2048)  # nothing is that large: fall back to the largest


def test_same_truth_renders_same_bytes(library: AssetLibrary) -> None:
    truth = plan(library, 3)
    assert truth == plan(library, 3)
    assert render(truth, library) == render(truth, library)
    assert plan(library, 4) != truth


@pytest.mark.parametrize(("width", "height"), [(512, 512), (768, 512), (384, 640)])
def test_output_has_the_requested_size(library: AssetLibrary, width: int, height: int) -> None:
    img = decode(render(plan(library, 5, width=width, height=height), library))
    assert img.shape == (height, width, 3)


def test_clean_variations_stay_sharp_and_close_to_the_source(library: AssetLibrary) -> None:
    for seed in range(6):
        truth = plan(library, seed)
        assert truth.clean
        out = decode(render(truth, library))
        source = library.image(truth.source)
        # A mild crop (≤ 14 % upscale) and colour change: no visible blur, no exposure shift.
        assert sharpness(out) > 0.45 * sharpness(source), truth
        assert abs(float(out.mean()) - float(source.mean())) < 0.12 * 255


# Edits of a small part of the face: they change few pixels, but those they change clearly.
LOCAL_DEFECTS = frozenset({Defect.CLOSED_EYES, Defect.LOPSIDED_MOUTH})


def test_every_pixel_defect_changes_the_image(library: AssetLibrary) -> None:
    clean_truth = plan(library, 7)
    clean = decode(render(clean_truth, library)).astype(np.float32)
    for defect in Defect:
        if defect is Defect.TRUNCATED or defect in PRODUCT_DEFECTS:  # products: test_products.py
            continue
        truth = plan(library, 7, defect_rate=1.0, defect_mix={defect: 1.0})
        assert truth.defect is defect and 0.5 <= truth.strength <= 1.0
        assert truth.source == clean_truth.source  # the defect draw comes after the picture's
        assert truth.labels == (defect.value,) and not truth.clean
        diff = np.abs(decode(render(truth, library)).astype(np.float32) - clean).max(axis=2)
        if defect in LOCAL_DEFECTS:
            assert (diff > 25).mean() > 0.002, defect  # about the eyes' or the mouth's area
        else:
            assert diff.mean() > 2.0, defect


def test_truncated_defect_cuts_the_encoded_bytes(library: AssetLibrary) -> None:
    whole = render(plan(library, 8), library)
    cut = render(plan(library, 8, defect_rate=1.0, defect_mix={Defect.TRUNCATED: 1.0}), library)
    assert len(cut) < 0.61 * len(whole) and whole.startswith(cut)
    with pytest.raises(OSError), Image.open(io.BytesIO(cut)) as img:
        img.load()


def test_jpeg_output(library: AssetLibrary) -> None:
    data = render(plan(library, 9, image_format="jpeg"), library)
    assert data[:3] == b"\xff\xd8\xff"
