"""Background removal end to end: real model, real funnel and router, emulated APIs over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import imagefunnel.market
from imagefunnel.cutouts import run_cutouts
from imagefunnel.imaging import decode_image
from imagefunnel.market.cutout_app import CutoutServer
from imagefunnel.market.cutout_profile import CutoutApiProfile
from imagefunnel.providers.base import Provider
from imagefunnel.providers.cutout_api import RemoveBgProvider
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL, local_cutout_provider
from imagefunnel.routing import Router
from imagefunnel.store import BlobStore, Store

pytest.importorskip("mediapipe")
PORTRAITS = Path(imagefunnel.market.__file__).parent / "assets" / "portraits"


async def test_routed_cutouts_fall_back_to_the_api_when_cold_or_rejected(tmp_path: Path) -> None:
    # obama_1: the self-hosted model's cutout is clean; obama_2: it keeps a blob of background
    # (rejected), so the job must buy that photo's cutout from the API instead.
    photos = [PORTRAITS / "obama_1.jpg", PORTRAITS / "obama_2.jpg", PORTRAITS / "obama_1.jpg"]
    profile = CutoutApiProfile(name="api", usd_per_image=0.05, processing_s=(0.0, 0.05))
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    local = local_cutout_provider(serve_cold=False, usd_per_hour=0.40)
    with CutoutServer([profile], time_factor=1.0) as apis:
        api = RemoveBgProvider(name="api", base_url=apis.base_url("api"), api_key="k", usd_per_credit=0.05)
        providers: list[Provider] = [local, api]
        router = Router(providers, ledger=store)
        first = await run_cutouts(
            photos[:1], providers, store=store, blobs=BlobStore(tmp_path), router=router
        )
        # Cold: the worker answered "retry later" and started loading; the API delivered.
        assert first[0].status == "delivered" and first[0].provider == "api" and local.refused == 1
        for _ in range(200):  # until the model has loaded and the retry-after hold is over
            if local.warm and not router.health.cooldown_remaining_s(
                "local-cutout", BACKGROUND_REMOVAL_MODEL
            ):
                break
            await asyncio.sleep(0.05)
        rest = await run_cutouts(
            photos[1:], providers, store=store, blobs=BlobStore(tmp_path), router=router, concurrency=1
        )
        await api.aclose()
    await local.aclose()
    by_photo = {(o.source.name, o.provider) for o in rest}
    assert ("obama_1.jpg", "local-cutout") in by_photo  # warm and accepted: the cheap path
    assert ("obama_2.jpg", "api") in by_photo  # local cutout rejected, never re-bought
    obama_2 = next(o for o in rest if o.source.name == "obama_2.jpg")
    assert obama_2.candidates == 2 and obama_2.spent_usd == pytest.approx(0.05, abs=0.001)
    for outcome in (*first, *rest):
        assert outcome.image is not None and decode_image(outcome.image).alpha is not None
    store.close()
