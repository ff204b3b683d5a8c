"""The demo's wiring: its spec's reference photos, its adapters, and its count against hidden labels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagefunnel.cli.demo import defect_catch, demo_spec, market_providers
from imagefunnel.funnel import JobResult
from imagefunnel.funnel.result import CandidateResult, DimensionResult
from imagefunnel.market import MarketServer, Scenario
from imagefunnel.market.defects import Defect
from imagefunnel.market.images import AssetLibrary
from imagefunnel.market.records import ImageInput, Job
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.comfyui import ComfyUIProvider

MODEL = "fal-ai/flux/dev"


@pytest.fixture(scope="module")
def library() -> AssetLibrary:
    return AssetLibrary()


@pytest.fixture(scope="module")
def market(library: AssetLibrary) -> Iterator[MarketServer]:
    fal = {"protocol": "fal", "models": [MODEL], "price_usd_per_mp": 0.02}
    scenario = Scenario.model_validate(
        {
            "name": "labels",
            "providers": [
                {"name": "clean", **fal},
                {"name": "drifter", "identity_drift_rate": 1.0, **fal},
                {"name": "closer", "defect_rate": 1.0, "defect_mix": {"closed_eyes": 1}, **fal},
            ],
        }
    )
    with MarketServer(scenario, library=library) as server:
        yield server


def test_the_demo_spec_shows_one_subject_in_packaged_photos(library: AssetLibrary) -> None:
    spec = demo_spec()
    assert len(spec.references) >= 2
    assert all(path.is_file() for path in spec.references)
    assert library.subject([path.read_bytes() for path in spec.references]) == "obama"


async def test_the_demo_market_wires_its_comfyui_box_at_its_spot_price() -> None:
    with MarketServer("demo", time_factor=0.01) as market:
        providers = market_providers(market, MODEL)
        (box,) = [p for p in providers if isinstance(p, ComfyUIProvider)]
        spec = market.scenario.box(box.name)
        assert (await box.health()).ok
        market.advance(spec.price_schedule[0].after_s)  # past the first spot price change
        request = GenerationRequest(request_id="r", model=MODEL, prompt="a headshot", width=256, height=256)
        generation = await box.generate(request)
        for provider in providers:
            assert (await provider.capabilities()).supports_reference_images  # the demo sends photos
            await provider.aclose()
        (bill,) = market.gpu_billing()
    # The adapter charges the spot price in force, as the box's own bill does.
    assert bill.usd_per_hour == spec.price_schedule[0].usd_per_hour
    assert generation.charged_usd == pytest.approx(bill.usd)
    assert generation.charged_usd < 0.005  # a fraction of a cent


def job(market: MarketServer, library: AssetLibrary, provider: str, n: int) -> Job:
    refs = (library.file("obama_1.jpg"),)
    inp = ImageInput(prompt=f"p{n}", width=512, height=512, seed=n, references=refs)
    found = market.market.submit(provider, MODEL, inp)
    assert isinstance(found, Job)
    return found


def candidate(n: int, request_id: str, *failed: str) -> CandidateResult:
    dims = [
        DimensionResult(dimension=d, tier=2, value=1.0, threshold=0.5, passed=False, reason=d) for d in failed
    ]
    return CandidateResult(
        id=n, request_id=f"r{n}", wave=1, provider="p", provider_request_id=request_id, passed=not failed,
        delivered=False, rank=None, quality=0.0, charged_usd=0.0, latency_s=0.0, blob_sha256="", image_path="",
        failed=list(failed), dimensions=dims,
    )  # fmt: skip


def test_the_count_against_hidden_labels(market: MarketServer, library: AssetLibrary) -> None:
    clean = [job(market, library, "clean", n).id for n in range(3)]
    drifted = job(market, library, "drifter", 10)
    closed = job(market, library, "closer", 20)
    assert drifted.truth.labels == ("identity_drift",) and closed.truth.defect is Defect.CLOSED_EYES
    candidates = [
        candidate(1, clean[0]),  # clean, passed
        candidate(2, clean[1], "duplicate"),  # clean, a duplicate: not a false reject
        candidate(3, clean[2], "identity"),  # clean, rejected: a false reject
        candidate(4, drifted.id, "identity", "duplicate"),  # caught
        candidate(5, closed.id),  # missed
    ]
    result = JobResult(
        job_id="j", name="n", status="partial", stop_reason="", asked=1, delivered=0, candidates_generated=5,
        candidates_passed=2, failed_attempts=0, quoted_usd=0.0, spent_usd=0.0, providers=[], candidates=candidates,
    )  # fmt: skip
    catch = defect_catch(result, market)
    assert (catch.defective, catch.caught, catch.clean, catch.false_rejects) == (2, 1, 3, 1)
    assert catch.by_label == {"identity_drift": (1, 1), "closed_eyes": (0, 1)}
    assert "caught 1/2 injected defects (closed_eyes 0/1, identity_drift 1/1), 1/3 clean" in catch.line()
