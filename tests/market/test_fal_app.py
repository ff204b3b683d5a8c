"""fal's queue protocol as the market speaks it, checked over loopback HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from market_fixtures import FAL_MODEL, fal_profile

from imagefunnel.market import MarketServer, ProviderProfile, Scenario

MODEL = FAL_MODEL
AUTH = {"Authorization": "Key fal-test"}


def _profile(name: str, **overrides: Any) -> ProviderProfile:
    return fal_profile(name, **({"queue_s": (10, 10)} | overrides))


SCENARIO = Scenario(
    name="protocol",
    seed=3,
    providers=(
        _profile("staged"),
        _profile("fifo", queue_s=[1e6, 1e6]),
        _profile("failing", failure_rate=1.0),
        _profile("limited", rate_limit_per_s=0.01),
        _profile("later-down", outages=[{"start_s": 1e5, "end_s": 1e7}]),
        _profile("box", slots=2, queue_s=[0, 0]),
    ),
)


@pytest.fixture(scope="module")
def market() -> Iterator[MarketServer]:
    # time_factor 1: wall time barely moves the clock; the tests step it with advance().
    with MarketServer(SCENARIO, time_factor=1.0) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=5.0) as client:
        yield client


def submit(market: MarketServer, http: httpx.Client, provider: str = "staged", **body: Any) -> dict[str, Any]:
    response = http.post(f"{market.base_url(provider)}/{MODEL}", json={"prompt": "headshot", **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_request_walks_through_queue_progress_and_completion(
    market: MarketServer, http: httpx.Client
) -> None:
    handle = submit(market, http, image_size={"width": 640, "height": 480}, seed=9, output_format="png")
    assert set(handle) >= {"request_id", "response_url", "status_url", "cancel_url", "queue_position"}
    app_url = f"{market.base_url('staged')}/fal-ai/flux"  # owner/alias only, like fal
    assert handle["status_url"] == f"{app_url}/requests/{handle['request_id']}/status"

    queued = http.get(handle["status_url"])
    assert queued.status_code == 202 and queued.json()["status"] == "IN_QUEUE"
    assert queued.json()["queue_position"] == 0
    assert http.get(handle["response_url"]).status_code == 400
    market.advance(10)
    running = http.get(handle["status_url"], params={"logs": "1"}).json()
    assert running["status"] == "IN_PROGRESS" and running["logs"][0]["message"]
    assert http.get(handle["status_url"]).json()["logs"] is None
    market.advance(10)
    done = http.get(handle["status_url"])
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert "logs" in done.json() and "error" not in done.json()

    result = http.get(handle["response_url"]).json()
    [image] = result["images"]
    assert (image["width"], image["height"], image["content_type"]) == (640, 480, "image/png")
    assert result["seed"] == 9
    file = httpx.get(image["url"])  # no credentials: output files are public, like fal's CDN
    assert file.status_code == 200 and file.headers["content-type"] == "image/png"
    assert file.content.startswith(b"\x89PNG")


def test_queue_position_counts_requests_ahead(market: MarketServer, http: httpx.Client) -> None:
    first, second = submit(market, http, "fifo"), submit(market, http, "fifo")
    assert (first["queue_position"], second["queue_position"]) == (0, 1)
    http.put(first["cancel_url"])
    assert http.get(second["status_url"]).json()["queue_position"] == 0


def test_a_provider_with_slots_queues_what_it_cannot_run_yet(
    market: MarketServer, http: httpx.Client
) -> None:
    handles = [submit(market, http, "box", seed=seed) for seed in range(5)]
    assert [h["queue_position"] for h in handles] == [0, 0, 0, 1, 2]  # two run, three wait in line

    def statuses() -> list[tuple[str, int | str | None]]:
        bodies = [http.get(h["status_url"]).json() for h in handles]
        return [(b["status"], b.get("queue_position", b.get("error_type"))) for b in bodies]

    running = ("IN_PROGRESS", None)
    assert statuses() == [running, running, ("IN_QUEUE", 0), ("IN_QUEUE", 1), ("IN_QUEUE", 2)]
    market.advance(10)  # the first two are done: the next two take their slots
    assert statuses()[2:] == [running, running, ("IN_QUEUE", 0)]
    http.put(handles[4]["cancel_url"])
    market.advance(10)
    assert statuses() == [("COMPLETED", None)] * 4 + [("COMPLETED", "request_cancelled")]


def test_cancel_only_while_queued(market: MarketServer, http: httpx.Client) -> None:
    queued = submit(market, http)
    cancelled = http.put(queued["cancel_url"])
    assert cancelled.status_code == 202 and cancelled.json() == {"status": "CANCELLATION_REQUESTED"}
    status = http.get(queued["status_url"]).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "request_cancelled"
    assert http.get(queued["response_url"]).status_code == 400
    assert http.put(queued["cancel_url"]).status_code == 400

    running = submit(market, http)
    market.advance(10.5)
    refused = http.put(running["cancel_url"])
    assert refused.status_code == 400 and refused.json() == {"status": "ALREADY_COMPLETED"}
    assert queued["request_id"] not in {r.request_id for r in market.billing()}


def test_failed_request_completes_with_error(market: MarketServer, http: httpx.Client) -> None:
    handle = submit(market, http, "failing")
    market.advance(21)
    status = http.get(handle["status_url"]).json()
    assert status["status"] == "COMPLETED" and status["error"] and status["error_type"]
    result = http.get(handle["response_url"])
    assert result.status_code == 500 and result.headers["x-fal-error-type"] == status["error_type"]
    assert http.get(f"{market.url}/files/failing/{handle['request_id']}.jpg").status_code == 404


def test_rate_limit_answers_429_with_retry_after(market: MarketServer, http: httpx.Client) -> None:
    submit(market, http, "limited")
    limited = http.post(f"{market.base_url('limited')}/{MODEL}", json={"prompt": "x"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


def test_outage_answers_503_on_every_route(market: MarketServer, http: httpx.Client) -> None:
    handle = submit(market, http, "later-down")
    market.advance(1e5)
    base = market.base_url("later-down")
    assert http.get(handle["status_url"]).status_code == 503
    assert http.get(handle["response_url"]).status_code == 503
    assert http.post(f"{base}/{MODEL}", json={"prompt": "x"}).status_code == 503
    assert http.get(f"{base}/v1/models/pricing", params={"endpoint_id": MODEL}).status_code == 503


def test_submit_with_subpath_and_presets(market: MarketServer, http: httpx.Client) -> None:
    body = {"prompt": "x", "image_url": "https://example.com/face.jpg"}  # image-to-image needs one
    response = http.post(f"{market.base_url('staged')}/fal-ai/flux/dev/image-to-image", json=body)
    assert response.status_code == 200
    assert "/image-to-image" not in response.json()["status_url"]
    assert market.truth(response.json()["request_id"]).width == 1024  # fal's default landscape_4_3
    square = submit(market, http, image_size="square_hd")
    truth = market.truth(square["request_id"])
    assert (truth.width, truth.height) == (1024, 1024)


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/staged/fal-ai/flux/dev", {}, {"prompt": "x"}, 401),
        ("/staged/fal-ai/flux/dev", {"Authorization": "Bearer x"}, {"prompt": "x"}, 401),
        ("/nobody/fal-ai/flux/dev", AUTH, {"prompt": "x"}, 404),
        ("/staged/fal-ai/other", AUTH, {"prompt": "x"}, 404),
        ("/staged/fal-ai/flux/dev", AUTH, {}, 422),
        ("/staged/fal-ai/flux/dev", AUTH, {"prompt": "x", "num_images": 2}, 422),
        ("/staged/fal-ai/flux/dev", AUTH, {"prompt": "x", "image_size": {"width": 9000, "height": 9}}, 422),
    ],
)
def test_submit_errors(
    market: MarketServer, path: str, headers: dict[str, str], body: dict[str, Any], status: int
) -> None:
    response = httpx.post(market.url + path, json=body, headers=headers)
    assert response.status_code == status
    assert "detail" in response.json()


def test_unknown_request_id_is_404(market: MarketServer, http: httpx.Client) -> None:
    assert http.get(f"{market.base_url('staged')}/fal-ai/flux/requests/nope/status").status_code == 404


def test_pricing_endpoint_has_fals_shape(market: MarketServer, http: httpx.Client) -> None:
    url = f"{market.base_url('staged')}/v1/models/pricing"
    body = http.get(url, params={"endpoint_id": f"{MODEL},fal-ai/flux,fal-ai/unknown"}).json()
    assert body["prices"] == [
        {"endpoint_id": MODEL, "unit_price": 0.025, "unit": "megapixels", "currency": "USD"},
        {"endpoint_id": "fal-ai/flux", "unit_price": 0.025, "unit": "megapixels", "currency": "USD"},
    ]
    assert http.get(url).status_code == 422
    assert httpx.get(url, params={"endpoint_id": MODEL}).status_code == 401


def test_admin_routes_expose_billing_and_stats_but_not_truth(
    market: MarketServer, http: httpx.Client
) -> None:
    billing = http.get(f"{market.url}/_market/billing").json()
    assert billing == [dataclasses.asdict(record) for record in market.billing()]
    stats = http.get(f"{market.url}/_market/stats").json()
    assert set(stats) == {p.name for p in SCENARIO.providers}
    assert "defect" not in str(billing)
