"""Clean outputs of one subject differ the way separate generations do: they are not perceptual
near-duplicates of each other (which the funnel would reject), and the face stays whole in the frame
even at the extremes of every variation range."""

from __future__ import annotations

import io
import itertools

import imagehash
import numpy as np
import pytest
from PIL import Image

from imagefunnel.market.engine import derive_rng
from imagefunnel.market.images import (
    _ROTATION_DEG,
    _SHIFT_X,
    _SHIFT_Y,
    _ZOOM,
    AssetLibrary,
    Truth,
    Variation,
    plan_image,
    render,
)

NEAR_DUPLICATE = 4  # phash bits: the funnel's duplicate threshold


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_clean_outputs_of_one_subject_are_rarely_near_duplicates(library: AssetLibrary) -> None:
    truths = [
        plan_image(
            provider="p",
            library=library,
            width=256,
            height=256,
            seed=seed,
            image_format="png",
            defect_rate=0.0,
            defect_mix={},
            rng=derive_rng("variety", seed),
        )
        for seed in range(80)
    ]
    hashes = [imagehash.phash(decode(render(truth, library))) for truth in truths]
    same_source = [
        hashes[a] - hashes[b]
        for a, b in itertools.combinations(range(len(truths)), 2)
        if truths[a].source == truths[b].source
    ]
    assert len(same_source) > 200
    near = sum(distance <= NEAR_DUPLICATE for distance in same_source) / len(same_source)
    assert near < 0.05  # about 13 % of such pairs were near-duplicates with the old, narrow variation


def test_the_face_stays_in_frame_at_every_extreme(library: AssetLibrary) -> None:
    pytest.importorskip("mediapipe")
    from imagefunnel.scoring.faces import FaceModels

    models = FaceModels()
    corners = itertools.product((-_SHIFT_X, _SHIFT_X), (-_SHIFT_Y, _SHIFT_Y), (-_ROTATION_DEG, _ROTATION_DEG))
    for source, (shift_x, shift_y, rotation) in itertools.product(library.eligible(512, 512), list(corners)):
        variation = Variation(
            crop=_ZOOM[0],  # the tightest framing
            shift_x=shift_x,
            shift_y=shift_y,
            flip=False,
            brightness=1.0,
            contrast=1.0,
            warmth=0.0,
            tint=(0.0, 0.0, 0.0),
            rotation=rotation,
        )
        # Framing is relative to the source, so a small render frames the face as a 512 px one does.
        truth = Truth(
            provider="p",
            source=source,
            width=256,
            height=256,
            seed=0,
            image_format="png",
            variation=variation,
        )
        box = models.analyse(np.asarray(decode(render(truth, library)))).primary
        assert box is not None, truth
        assert box.left >= 0 and box.top >= 0 and box.right <= 256 and box.bottom <= 256, (truth, box)
