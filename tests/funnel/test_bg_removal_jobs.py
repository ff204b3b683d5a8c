"""A background-removal spec through the real funnel: the job's source photo goes to the self-hosted
segmentation model and the market's cutout APIs, wired as ``run``, ``resume`` and the workers wire them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

import imagefunnel.market
from imagefunnel.cli.demo import LOCAL_CUTOUT, market_providers
from imagefunnel.funnel import FunnelObserver
from imagefunnel.funnel.events import CandidateScored
from imagefunnel.imaging import decode_image
from imagefunnel.jobs import run_funnel_job
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL
from imagefunnel.spec import JobSpec, load_spec
from imagefunnel.store import BlobStore, Store

pytest.importorskip("mediapipe")
PORTRAITS = Path(imagefunnel.market.__file__).parent / "assets" / "portraits"
API_USD = 0.05


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    scenario = Scenario.model_validate(
        {
            "name": "cutouts",
            "seed": 1,
            "providers": [
                {"name": "gen", "protocol": "fal", "models": ["fal-ai/flux/dev"], "price_usd_per_mp": 0.02}
            ],
            "cutout_apis": [{"name": "api", "usd_per_image": API_USD, "processing_s": [0.0, 0.05]}],
        }
    )
    with MarketServer(scenario, time_factor=1.0) as server:
        yield server


def example_spec(**updates: object) -> JobSpec:
    path = resources.files("imagefunnel.spec") / "examples" / "bg-removal-demo.yaml"
    spec = load_spec(Path(str(path)))
    return spec.model_copy(update=updates)


async def run(
    spec: JobSpec,
    market: MarketServer,
    store: Store,
    blobs: BlobStore,
    *,
    job_id: str | None = None,
    observer: FunnelObserver | None = None,
) -> str:
    """The job as ``imagefunnel run`` and the workers run it: the market's adapters for its model."""
    providers = market_providers(market, spec.model)
    outcome = await run_funnel_job(
        spec, providers, store=store, blobs=blobs, job_id=job_id, observer=observer, probe_interval_s=None
    )
    return outcome.job_id


def assert_ledger_is_the_spend(store: Store, job_id: str) -> None:
    rows = store.ledger(job_id)
    assert all(row.status == "succeeded" for row in rows)
    assert sum(row.charged_usd or 0.0 for row in rows) == pytest.approx(store.spent_usd(job_id))


async def test_the_example_spec_is_cut_out_by_the_self_hosted_model(
    market: MarketServer, store: Store, blobs: BlobStore
) -> None:
    spec = example_spec()
    assert spec.source is not None and spec.source.name == "grace_hopper.jpg" and spec.source.is_file()
    job_id = await run(spec, market, store, blobs)
    job = store.job(job_id)
    assert (job.status, job.delivered) == ("delivered", 1)
    [cutout] = store.candidates(job_id)
    assert cutout.provider == LOCAL_CUTOUT and cutout.passed and cutout.delivered
    image = decode_image(blobs.get(cutout.blob_sha256))
    photo = decode_image(spec.source.read_bytes())
    assert image.alpha is not None and image.rgb.shape == photo.rgb.shape
    assert 0.2 < float((image.alpha > 128).mean()) < 0.9  # a subject, not an empty or full matte
    assert_ledger_is_the_spend(store, job_id)


async def test_a_photo_the_model_cuts_badly_is_bought_from_the_api(
    market: MarketServer, store: Store, blobs: BlobStore
) -> None:
    # obama_2: the self-hosted matte keeps a blob of background and is rejected by the cutout scorers.
    job_id = await run(example_spec(source=PORTRAITS / "obama_2.jpg"), market, store, blobs)
    assert store.job(job_id).status == "delivered"
    rows = store.candidates(job_id)
    assert [(r.provider, r.passed, r.delivered) for r in rows] == [
        (LOCAL_CUTOUT, False, False),
        ("api", True, True),
    ]
    assert decode_image(blobs.get(rows[1].blob_sha256)).alpha is not None
    local_usd = rows[0].charged_usd
    assert 0 < local_usd < 0.01
    assert store.spent_usd(job_id) == pytest.approx(local_usd + API_USD)
    assert_ledger_is_the_spend(store, job_id)


async def test_a_resumed_job_does_not_buy_the_rejected_cutout_again(
    market: MarketServer, store: Store, blobs: BlobStore
) -> None:
    spec = example_spec(source=PORTRAITS / "obama_2.jpg")
    job_id = "bg-resume-0001"

    class StopAfterFirst(FunnelObserver):  # the process stops right after the first verdict
        def candidate_scored(self, event: CandidateScored) -> None:
            job.cancel()

    job = asyncio.ensure_future(run(spec, market, store, blobs, job_id=job_id, observer=StopAfterFirst()))
    with pytest.raises(asyncio.CancelledError):
        await job
    assert store.job(job_id).status == "running"
    assert [(r.provider, r.passed) for r in store.candidates(job_id)] == [(LOCAL_CUTOUT, False)]

    providers = market_providers(market, BACKGROUND_REMOVAL_MODEL)
    outcome = await run_funnel_job(
        spec, providers, store=store, blobs=blobs, resume_job_id=job_id, probe_interval_s=None
    )
    assert outcome.status == "delivered"
    rows = store.candidates(job_id)
    assert [r.provider for r in rows] == [LOCAL_CUTOUT, "api"] and rows[1].delivered
    assert [row.provider for row in store.ledger(job_id)] == [LOCAL_CUTOUT, "api"]
    assert_ledger_is_the_spend(store, job_id)
