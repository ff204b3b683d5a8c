"""Subject-aware generation over real loopback HTTP: reference photos go out on each protocol's wire
(fal: a data URI as ``image_url``; ComfyUI: an uploaded file for ``LoadImage``), the market renders
the person they show, and a drifting provider renders someone else, labelled ``identity_drift``."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.imaging import decode_image
from imagefunnel.market import IDENTITY_DRIFT, MarketServer, Scenario
from imagefunnel.market.images import AssetLibrary
from imagefunnel.providers.base import GenerationRequest, Provider
from imagefunnel.providers.comfyui import ComfyUIProvider
from imagefunnel.providers.fal import FalProvider
from imagefunnel.scoring import Scorer, ScoringContext

pytest.importorskip("dlib")  # the identity dimension's face descriptors

MODEL = "fal-ai/flux/dev"
SIDE = 384
FAST = {"queue_s": [0.0, 0.0], "processing_s": [0.1, 0.2]}


@pytest.fixture(scope="module")
def market(library: AssetLibrary) -> Iterator[MarketServer]:
    fal = {"protocol": "fal", "models": [MODEL], "price_usd_per_mp": 0.02, **FAST}
    box = {"models": [MODEL], "usd_per_hour": 0.5, "seconds_per_step": 0.05, "load_s": 1.0}
    scenario = Scenario.model_validate(
        {
            "name": "subjects",
            "seed": 5,
            "time_factor": 0.01,
            "providers": [
                {"name": "faithful", **fal},
                {"name": "drifter", "identity_drift_rate": 1.0, **fal},
            ],
            "comfyui_boxes": [
                {"name": "box-faithful", **box},
                {"name": "box-drifter", "identity_drift_rate": 1.0, **box},
            ],
        }
    )
    with MarketServer(scenario, library=library) as server:
        yield server


@pytest.fixture(scope="module")
def identity(library: AssetLibrary) -> Scorer:
    references = (decode_image(library.file("obama_1.jpg")), decode_image(library.file("obama_2.jpg")))
    return Scorer(dimensions=["identity"], context=ScoringContext(references=references))


def request(library: AssetLibrary, n: int, *, references: bool = True) -> GenerationRequest:
    refs = (library.file("obama_1.jpg"), library.file("obama_2.jpg")) if references else ()
    return GenerationRequest(
        request_id=f"r{n}",
        model=MODEL,
        prompt="headshot",
        width=SIDE,
        height=SIDE,
        seed=n,
        reference_images=refs,
    )


async def generate(provider: Provider, req: GenerationRequest) -> tuple[bytes, str]:
    try:
        generation = await provider.generate(req)
    finally:
        await provider.aclose()
    return generation.image, generation.provider_request_id


def adapter(market: MarketServer, name: str) -> Provider:
    return next(p for p in market_providers(market, MODEL) if p.name == name)


async def test_the_demo_wiring_builds_reference_capable_adapters(market: MarketServer) -> None:
    providers = {p.name: p for p in market_providers(market, MODEL)}
    assert isinstance(providers["faithful"], FalProvider)
    assert isinstance(providers["box-faithful"], ComfyUIProvider)
    for provider in providers.values():
        assert (await provider.capabilities()).supports_reference_images
        await provider.aclose()


@pytest.mark.parametrize("name", ["faithful", "box-faithful"])
async def test_a_reference_job_renders_the_subject(
    market: MarketServer, library: AssetLibrary, identity: Scorer, name: str
) -> None:
    for n in range(2):
        image, request_id = await generate(adapter(market, name), request(library, n))
        truth = market.truth(request_id)  # the boxes' prompts are found too
        assert truth.subject == "obama" and truth.clean and truth.labels == ()
        verdict = identity.score(decode_image(image))
        assert verdict.passed, verdict.scores


@pytest.mark.parametrize("name", ["drifter", "box-drifter"])
async def test_a_drifting_provider_renders_someone_else(
    market: MarketServer, library: AssetLibrary, identity: Scorer, name: str
) -> None:
    image, request_id = await generate(adapter(market, name), request(library, 7))
    truth = market.truth(request_id)
    assert truth.identity_drift and truth.labels == (IDENTITY_DRIFT,)
    (score,) = identity.score(decode_image(image)).scores
    assert not score.passed and score.value > 0.6


async def test_without_references_nothing_changes(market: MarketServer, library: AssetLibrary) -> None:
    _, fal_id = await generate(adapter(market, "drifter"), request(library, 3, references=False))
    _, box_id = await generate(adapter(market, "box-drifter"), request(library, 3, references=False))
    for request_id in (fal_id, box_id):
        truth = market.truth(request_id)
        assert truth.subject is None and truth.clean
    assert market.gpu_billing()  # the boxes bill their GPU time on the market's side channel


def test_fal_takes_the_photo_on_image_to_image_endpoints_only(
    market: MarketServer, library: AssetLibrary
) -> None:
    photo = "data:image/jpeg;base64," + base64.b64encode(library.file("obama_3.jpg")).decode()
    base = market.base_url("faithful")
    auth = {"Authorization": "Key k"}
    with httpx.Client(headers=auth) as http:

        def submit(path: str, **body: object) -> httpx.Response:
            return http.post(f"{base}/{path}", json={"prompt": "x", "image_size": "square", **body})

        ignored = submit(MODEL, image_url=photo)  # a text-to-image endpoint ignores image_url
        assert market.truth(ignored.json()["request_id"]).subject is None
        taken = submit(f"{MODEL}/image-to-image", image_url=photo)
        assert market.truth(taken.json()["request_id"]).subject == "obama"
        pulid = submit(MODEL, reference_image_url=photo)  # identity endpoints name it so
        assert market.truth(pulid.json()["request_id"]).subject == "obama"
        url = submit(f"{MODEL}/image-to-image", image_url="https://example.com/me.jpg")  # never fetched
        assert market.truth(url.json()["request_id"]).subject is None
        assert submit(f"{MODEL}/image-to-image").status_code == 422  # image_url is required there
        assert submit(f"{MODEL}/image-to-image", image_url="data:image/png;base64,@@@").status_code == 422
        assert submit(f"{MODEL}/image-to-image", image_url="ftp://x/y.png").status_code == 422
