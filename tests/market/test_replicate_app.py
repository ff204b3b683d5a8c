"""The emulated Replicate predictions API over loopback HTTP, driven by the scenario clock.

The market runs at ``time_factor=1`` and the tests move its clock with ``advance``: every status
transition is reached without sleeping.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagefunnel.errors import SpecError
from imagefunnel.market import MarketServer, ProviderProfile, Scenario, load_scenario
from imagefunnel.market.replicate_app import parse_duration, version_id

MODEL = "black-forest-labs/flux-schnell"
AUTH = {"Authorization": "Bearer r8_test"}
REQUIRED = {"id", "model", "version", "status", "input", "output", "error", "logs", "metrics", "urls"}
TIMES = {"created_at", "started_at", "completed_at"}


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    base: dict[str, Any] = {
        "name": name,
        "protocol": "replicate",
        "models": [MODEL],
        "pricing": {"unit": "image", "usd": 0.003},
        "queue_s": [10, 10],
        "processing_s": [10, 10],
    }
    return ProviderProfile.model_validate(base | overrides)


GPU = {"unit": "gpu_second", "usd": 0.001}
SCENARIO = Scenario(
    name="replicate-app",
    seed=3,
    providers=(
        _profile("official"),
        _profile("hardware", pricing=GPU),
        _profile("instant", queue_s=[0, 0], processing_s=[0.001, 0.002]),
        _profile("failing", failure_rate=1.0),
        _profile("broken", error_5xx_rate=1.0),
        _profile("limited", rate_limit_per_s=0.0001),
        _profile("down", outages=[{"start_s": 0, "end_s": 1e9}]),
        _profile("one-gpu", pricing=GPU, slots=1, queue_s=[0, 0]),
    ),
)


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    # One server for the module: every test submits its own predictions and only moves the clock
    # forward, so tests do not disturb each other.
    with MarketServer(SCENARIO, time_factor=1.0) as server:
        yield server


def create(
    market: MarketServer, provider: str = "official", *, headers: dict[str, str] | None = None, **inp: Any
) -> httpx.Response:
    url = f"{market.base_url(provider)}/v1/models/{MODEL}/predictions"
    body = {"input": {"prompt": "studio headshot", "width": 256, "height": 256} | inp}
    return httpx.post(url, json=body, headers=AUTH | (headers or {}))


def get(prediction: dict[str, Any]) -> dict[str, Any]:
    response = httpx.get(prediction["urls"]["get"], headers=AUTH)
    assert response.status_code == 200
    return dict(response.json())


def test_prediction_walks_starting_processing_succeeded(market: MarketServer) -> None:
    created = create(market, seed=5)
    assert created.status_code == 201
    prediction = created.json()
    assert set(prediction) >= REQUIRED and set(prediction) >= TIMES
    assert prediction["status"] == "starting" and prediction["started_at"] is None
    assert prediction["version"] == version_id(MODEL) and len(prediction["version"]) == 64
    assert prediction["model"] == MODEL and prediction["input"]["seed"] == 5

    market.advance(10.5)
    running = get(prediction)
    assert running["status"] == "processing" and running["started_at"] and running["output"] is None

    market.advance(10)
    done = get(prediction)
    assert done["status"] == "succeeded" and done["completed_at"] and done["error"] is None
    assert done["metrics"]["predict_time"] == pytest.approx(10.0)
    [url] = done["output"]
    image = httpx.get(url)  # public, like replicate.delivery: no token needed
    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
    assert url.startswith(market.url)


def test_official_model_is_billed_per_image(market: MarketServer) -> None:
    prediction = create(market).json()
    market.advance(21)
    assert get(prediction)["status"] == "succeeded"
    [record] = [r for r in market.billing() if r.request_id == prediction["id"]]
    assert (record.unit, record.quantity, record.usd) == ("image", 1.0, 0.003)


def test_version_route_accepts_the_three_forms(market: MarketServer) -> None:
    url = f"{market.base_url('official')}/v1/predictions"
    for version in (version_id(MODEL), f"{MODEL}:{version_id(MODEL)}", MODEL):
        response = httpx.post(url, json={"version": version, "input": {"prompt": "x"}}, headers=AUTH)
        assert response.status_code == 201, version
        assert response.json()["model"] == MODEL
    unknown = httpx.post(url, json={"version": "0" * 64, "input": {"prompt": "x"}}, headers=AUTH)
    assert unknown.status_code == 422 and unknown.json()["title"] == "Invalid version or not permitted"


def test_cancel_after_aborts_a_prediction_that_never_started(market: MarketServer) -> None:
    prediction = create(market, headers={"Cancel-After": "5s"}).json()
    market.advance(4)
    assert get(prediction)["status"] == "starting"
    market.advance(2)
    aborted = get(prediction)
    assert aborted["status"] == "aborted" and aborted["completed_at"] and aborted["metrics"] == {}
    assert aborted["output"] is None
    market.advance(100)
    assert get(prediction)["status"] == "aborted"
    assert not [r for r in market.billing() if r.request_id == prediction["id"]]  # aborted is free


def test_cancel_after_cancels_a_running_prediction_and_bills_its_gpu_time(market: MarketServer) -> None:
    prediction = create(market, "hardware", headers={"Cancel-After": "15s"}).json()
    market.advance(16)
    canceled = get(prediction)
    assert canceled["status"] == "canceled"
    assert canceled["metrics"]["predict_time"] == pytest.approx(5.0)
    [record] = [r for r in market.billing() if r.request_id == prediction["id"]]
    assert record.unit == "gpu_second" and record.quantity == pytest.approx(5.0)
    assert record.usd == pytest.approx(0.005)


def test_cancel_endpoint_stops_queued_and_running_predictions(market: MarketServer) -> None:
    real_start = time.monotonic()  # the market's clock also runs in real time (factor 1)
    queued = create(market, "hardware").json()
    running = create(market, "hardware", prompt="another").json()
    official = create(market, prompt="official, running").json()
    market.advance(12)  # all three started at 10 s
    assert get(running)["status"] == "processing"
    for prediction in (running, official):
        response = httpx.post(prediction["urls"]["cancel"], headers=AUTH)
        assert response.status_code == 200 and response.json()["status"] == "canceled"
    real_elapsed = time.monotonic() - real_start
    fresh = create(market, "hardware", prompt="third").json()
    assert httpx.post(fresh["urls"]["cancel"], headers=AUTH).json()["status"] == "canceled"
    market.advance(50)
    billed = {r.request_id: r for r in market.billing()}
    # GPU time used before the cancel, plus the real time the HTTP calls took (the clock's factor is 1).
    assert 2.0 <= billed[running["id"]].quantity <= 2.0 + real_elapsed + 1e-6
    assert official["id"] not in billed  # per-image models bill outputs only
    assert fresh["id"] not in billed  # never ran
    assert get(queued)["status"] == "succeeded"
    after = httpx.post(queued["urls"]["cancel"], headers=AUTH).json()
    assert after["status"] == "succeeded"  # too late: cancelling a finished prediction changes nothing


def test_prefer_wait_holds_until_done_and_inlines_the_output(market: MarketServer) -> None:
    response = create(market, "instant", headers={"Prefer": "wait=5"}, output_format="png")
    prediction = response.json()
    assert response.status_code == 201 and prediction["status"] == "succeeded"
    [output] = prediction["output"]
    assert output.startswith("data:image/png;base64,")
    assert base64.b64decode(output.split(",", 1)[1]).startswith(b"\x89PNG")
    assert get(prediction)["output"][0].startswith("http")  # polling answers file URLs


def test_failed_prediction_has_an_error_and_is_free(market: MarketServer) -> None:
    prediction = create(market, "failing").json()
    market.advance(21)
    failed = get(prediction)
    assert failed["status"] == "failed" and failed["error"] and failed["output"] is None
    assert httpx.get(f"{market.base_url('failing')}/files/{prediction['id']}.webp").status_code == 404
    assert not [r for r in market.billing() if r.provider == "failing"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "title"),
    [
        ({"Authorization": ""}, {"input": {"prompt": "x"}}, 401, "Unauthenticated"),
        ({}, {"input": {}}, 422, "Input validation failed"),
        ({}, {"input": {"prompt": "x", "aspect_ratio": "7:5"}}, 422, "Input validation failed"),
        ({}, {"input": {"prompt": "x", "num_outputs": 2}}, 422, "Input validation failed"),
        ({"Prefer": "wait=90"}, {"input": {"prompt": "x"}}, 400, "Invalid Prefer header"),
        ({"Cancel-After": "soon"}, {"input": {"prompt": "x"}}, 400, "Invalid Cancel-After header"),
    ],
)
def test_bad_requests_get_problem_details(
    market: MarketServer, headers: dict[str, str], body: dict[str, Any], status: int, title: str
) -> None:
    url = f"{market.base_url('official')}/v1/models/{MODEL}/predictions"
    response = httpx.post(url, json=body, headers=AUTH | headers)
    assert response.status_code == status
    assert response.json()["title"] == title and response.json()["status"] == status


def test_unknown_model_and_prediction_are_404(market: MarketServer) -> None:
    base = market.base_url("official")
    assert httpx.post(f"{base}/v1/models/acme/nope/predictions", json={}, headers=AUTH).status_code == 404
    assert httpx.get(f"{base}/v1/predictions/missing", headers=AUTH).status_code == 404
    model = httpx.get(f"{base}/v1/models/{MODEL}", headers=AUTH).json()
    assert model["latest_version"]["id"] == version_id(MODEL)


def test_faults_429_5xx_and_outage(market: MarketServer) -> None:
    assert create(market, "limited").status_code == 201  # the one token in the bucket
    limited = create(market, "limited", prompt="again")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert create(market, "broken").status_code in (500, 502, 503, 504)
    down = create(market, "down")
    assert down.status_code == 503 and down.json()["status"] == 503
    assert market.stats()["broken"].rejected_5xx == 1 and market.stats()["limited"].rate_limited == 1


def test_durations_parse_like_go() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1m30s") == 90 and parse_duration("1h") == 3600
    assert parse_duration("250ms") == pytest.approx(0.25) and parse_duration("12") == 12
    assert parse_duration("1m30") is None and parse_duration("abc") is None


def test_profiles_check_replicate_model_ids_and_pricing_units(tmp_path: Any) -> None:
    text = (
        "name: t\nproviders:\n  - {name: r, protocol: replicate, models: [%s], pricing: {unit: %s, usd: 1}}\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text % (MODEL, "gpu_second"))
    assert load_scenario(path).provider("r").price_unit == "gpu_second"
    path.write_text(text % ("flux-schnell", "image"))
    with pytest.raises(SpecError, match="owner/name"):
        load_scenario(path)
    path.write_text(text % (MODEL, "megapixel"))
    with pytest.raises(SpecError, match="cannot bill per megapixel"):
        load_scenario(path)


def test_a_provider_with_one_slot_keeps_the_second_prediction_starting_and_bills_its_run_only(
    market: MarketServer,
) -> None:
    first, second = (create(market, "one-gpu", seed=seed).json() for seed in (1, 2))
    assert (get(first)["status"], get(second)["status"]) == ("processing", "starting")
    market.advance(10)
    assert (get(first)["status"], get(second)["status"]) == ("succeeded", "processing")
    market.advance(10)
    done = get(second)
    assert done["status"] == "succeeded"
    assert done["metrics"]["predict_time"] == pytest.approx(10.0)  # the wait for the GPU is not billed
