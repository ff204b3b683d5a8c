"""A product-shot job end to end on the emulated market (real HTTP): the spec's reference photo
travels with every request, the market draws the product in its colour, with its own product
defects; the funnel delivers only clean shots and rejects each defect by the dimension made for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import imagefunnel.spec
from imagefunnel.cli.demo import market_providers
from imagefunnel.funnel import Funnel, load_result
from imagefunnel.jobs import build_scorer
from imagefunnel.market.defects import Defect
from imagefunnel.market.products import PRODUCT_DEFECTS
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.routing import Router
from imagefunnel.spec import load_spec
from imagefunnel.store import BlobStore, Store

EXAMPLES = Path(imagefunnel.spec.__file__).parent / "examples"
MODEL = "fal-ai/flux/dev"
# The dimension that must reject each product defect (the text dimensions judge stray text).
CAUGHT_BY = {
    Defect.PRODUCT_OFF_CENTRE: {"product_centering"},
    Defect.PRODUCT_CUT_OFF: {"product_cutoff"},
    Defect.PRODUCT_WRONG_COLOUR: {"product_color_delta_e"},
    Defect.PRODUCT_STRAY_TEXT: {"text_area", "text_chars"},
    Defect.PRODUCT_BUSY_BACKDROP: {"backdrop_clutter"},
}


def catalogue_market() -> Scenario:
    return Scenario.model_validate(
        {
            "name": "catalogue",
            "seed": 15,
            "providers": [
                {
                    "name": "studio",
                    "protocol": "fal",
                    "models": [MODEL],
                    "price_usd_per_mp": 0.02,
                    "queue_s": [0.0, 0.0],
                    "processing_s": [0.01, 0.03],
                    "defect_rate": 0.5,
                    "product_defect_mix": {kind.value: 1.0 for kind in PRODUCT_DEFECTS},
                }
            ],
        }
    )


@pytest.mark.slow
async def test_a_product_job_delivers_clean_shots_and_rejects_each_defect_for_its_reason(
    market_factory: Callable[[Scenario], MarketServer], store: Store, blobs: BlobStore
) -> None:
    market = market_factory(catalogue_market())
    # Every dimension is scored (no early exit), so a rejection lists all it failed.
    job = load_spec(EXAMPLES / "product-demo.yaml").model_copy(
        update={"deliver": 3, "seed": 1, "score_all": True}
    )
    providers = market_providers(market, MODEL)
    funnel = Funnel(
        router=Router(providers, ledger=store), scorer=build_scorer(job), store=store, blobs=blobs
    )
    try:
        outcome = await funnel.run(job)
    finally:
        for provider in providers:
            await provider.aclose()
    result = load_result(store, blobs, outcome.job_id)
    assert result.delivered == 3
    seen: set[Defect] = set()
    for candidate in result.candidates:
        truth = market.truth(candidate.provider_request_id)
        assert truth.product is not None and truth.product.shape == "box"
        # The reference photo's red, not the prompt's named one: the photo reached the market.
        assert np.abs(np.array(truth.product.color) - (185, 28, 37)).max() <= 4
        if truth.clean:
            assert candidate.passed, candidate.failed
            continue
        assert not candidate.passed and truth.defect is not None
        seen.add(truth.defect)
        failed = {reason.split(" ", 1)[0] for reason in candidate.failed}
        assert failed & CAUGHT_BY[truth.defect], (truth.defect, candidate.failed)
    assert all(c.passed for c in result.candidates if c.delivered)
    assert len(seen) >= 3  # the seeded run met most kinds of defect
