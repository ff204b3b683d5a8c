"""A job's reference photos travel with every request, so only providers that take them are bought
from, and the market renders the subject they show (real HTTP, the emulated market)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.errors import SpecError
from imagefunnel.funnel import Funnel, load_result
from imagefunnel.market.images import AssetLibrary
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.routing import Router
from imagefunnel.scoring import Scorer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

MODEL = "acme/flux"  # an id both a fal and a Replicate profile can serve
FAST = {"queue_s": [0.0, 0.0], "processing_s": [0.01, 0.03]}


def two_protocols() -> Scenario:
    return Scenario.model_validate(
        {
            "name": "refs",
            "seed": 4,
            "providers": [
                {"name": "fal", "protocol": "fal", "models": [MODEL], "price_usd_per_mp": 0.03, **FAST},
                # Far cheaper, but its adapter cannot send a reference photo.
                {
                    "name": "rep",
                    "protocol": "replicate",
                    "models": [MODEL],
                    "pricing": {"unit": "image", "usd": 0.0001},
                    **FAST,
                },
            ],
        }
    )


def spec(**kw: object) -> JobSpec:
    base = {"prompts": ["a headshot"], "model": MODEL, "deliver": 2, "budget_usd": 5.0, "seed": 3}
    return JobSpec.model_validate(base | kw)


async def run(market: MarketServer, store: Store, blobs: BlobStore, job: JobSpec):  # type: ignore[no-untyped-def]
    providers = market_providers(market, MODEL)
    funnel = Funnel(router=Router(providers, ledger=store), scorer=Scorer(), store=store, blobs=blobs)
    try:
        outcome = await funnel.run(job)
    finally:
        for provider in providers:
            await provider.aclose()
    return load_result(store, blobs, outcome.job_id)


async def test_every_request_carries_the_references(
    market_factory: Callable[[Scenario], MarketServer], store: Store, blobs: BlobStore, tmp_path: Path
) -> None:
    photo = tmp_path / "me.jpg"
    photo.write_bytes(AssetLibrary().file("obama_3.jpg"))
    market = market_factory(two_protocols())
    result = await run(market, store, blobs, spec(references=[photo]))
    assert result.delivered == 2
    assert {c.provider for c in result.candidates} == {"fal"}  # the cheap one cannot take the photo
    assert {market.truth(c.provider_request_id).subject for c in result.candidates} == {"obama"}


async def test_without_references_the_cheapest_provider_is_used(
    market_factory: Callable[[Scenario], MarketServer], store: Store, blobs: BlobStore
) -> None:
    market = market_factory(two_protocols())
    result = await run(market, store, blobs, spec())
    assert "rep" in {c.provider for c in result.candidates}
    assert all(market.truth(c.provider_request_id).subject is None for c in result.candidates)


async def test_an_unreadable_reference_is_a_spec_error(
    market_factory: Callable[[Scenario], MarketServer], store: Store, blobs: BlobStore, tmp_path: Path
) -> None:
    market = market_factory(two_protocols())
    with pytest.raises(SpecError, match=r"missing\.jpg"):
        await run(market, store, blobs, spec(references=[tmp_path / "missing.jpg"]))
