"""Images and the headshot scorer recipe the executor tests score (same everywhere: same verdicts)."""

from __future__ import annotations

import pytest
from executor_fixtures import PHOTOS

from imagefunnel.evaluation.variants import encode_jpeg
from imagefunnel.executors import ScorerConfig
from imagefunnel.market import defects
from imagefunnel.market.images import AssetLibrary


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    library = AssetLibrary()
    out = {name: encode_jpeg(library.image(name), 92) for name in PHOTOS}
    out["someone_else"] = encode_jpeg(library.image("luispedro.jpg"), 92)
    out["text"] = encode_jpeg(defects.text_overlay(library.image("obama_3.jpg")), 92)
    out["blurred"] = encode_jpeg(defects.blur(library.image("obama_2.jpg")), 92)
    out["truncated"] = defects.truncate(out["obama_2.jpg"])
    return out


@pytest.fixture(scope="module")
def config() -> ScorerConfig:
    # The headshot cascade with a reference photo, every dimension measured: the whole model set.
    return ScorerConfig(
        use_case="headshot",
        score_all=True,
        references=(encode_jpeg(AssetLibrary().image("obama_1.jpg"), 92),),
    )
