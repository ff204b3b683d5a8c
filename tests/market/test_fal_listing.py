"""fal's request listing (``GET /v1/models/requests/by-endpoint``) as the market serves it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from market_fixtures import FAL_MODEL, fal_profile

from imagefunnel.market import MarketServer, Scenario

MODEL = FAL_MODEL
AUTH = {"Authorization": "Key fal-test"}


SCENARIO = Scenario(
    name="listing",
    seed=5,
    providers=(
        fal_profile("north"),
        fal_profile("south"),
        fal_profile("filters"),
        fal_profile("failing", failure_rate=1.0),
        fal_profile("queued", queue_s=[1e6, 1e6]),
        fal_profile("varied", processing_s=[1, 20]),
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


def submit(http: httpx.Client, market: MarketServer, provider: str, path: str = MODEL, **body: Any) -> str:
    sent = {"prompt": "a mug", **body}
    response = http.post(f"{market.base_url(provider)}/{path}", json=sent)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def listing(http: httpx.Client, market: MarketServer, provider: str, **params: Any) -> httpx.Response:
    url = f"{market.base_url(provider)}/v1/models/requests/by-endpoint"
    return http.get(url, params={"endpoint_id": MODEL, **params})


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["request_id"] for item in response.json()["items"]]


def test_lists_the_callers_ended_requests_newest_ended_first(
    market: MarketServer, http: httpx.Client
) -> None:
    first = submit(http, market, "north", seed=1, image_size={"width": 256, "height": 256})
    other_endpoint = submit(http, market, "north", path="fal-ai/flux", seed=4)
    market.advance(1)
    second = submit(http, market, "north", seed=2)
    market.advance(1)
    running = submit(http, market, "north", seed=3)
    submit(http, market, "south", seed=5)  # another provider's account: never listed here
    market.advance(9.5)  # first and second have ended (10 s each), running has not

    body = listing(http, market, "north").json()
    assert [item["request_id"] for item in body["items"]] == [second, first]
    assert body["has_more"] is False and body["next_cursor"] is None
    item = body["items"][1]
    assert item["endpoint_id"] == MODEL and item["status_code"] == 200
    assert item["duration"] == pytest.approx(10.0)
    sent, ended = datetime.fromisoformat(item["sent_at"]), datetime.fromisoformat(item["ended_at"])
    assert ended - sent == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=0.5))
    assert "json_input" not in item  # payloads only on request
    assert running not in ids(listing(http, market, "north"))
    assert ids(listing(http, market, "north", endpoint_id="fal-ai/flux")) == [other_endpoint]
    both = {second, first, other_endpoint}
    assert set(ids(listing(http, market, "north", endpoint_id=f"{MODEL},fal-ai/flux"))) == both
    assert set(ids(listing(http, market, "north", endpoint_id=[MODEL, "fal-ai/flux"]))) == both

    expanded = listing(http, market, "north", expand="payloads").json()["items"]
    assert expanded[1]["json_input"] == {
        "prompt": "a mug",
        "seed": 1,
        "image_size": {"width": 256, "height": 256},
    }  # the body exactly as submitted
    assert expanded[1]["json_output"]["images"][0]["width"] == 256
    market.advance(1)
    assert ids(listing(http, market, "north"))[0] == running  # listed once it has ended


def test_pages_with_an_opaque_cursor(market: MarketServer, http: httpx.Client) -> None:
    sent = []
    for seed in range(3):
        sent.append(submit(http, market, "south", seed=10 + seed))
        market.advance(1)
    market.advance(10)
    everything = ids(listing(http, market, "south"))
    assert everything[:3] == sent[::-1]
    page = listing(http, market, "south", limit=2).json()
    assert [i["request_id"] for i in page["items"]] == everything[:2]
    assert page["has_more"] is True and page["next_cursor"] == "Mg=="
    rest = listing(http, market, "south", limit=2, cursor=page["next_cursor"]).json()
    assert [i["request_id"] for i in rest["items"]] == everything[2:4]
    assert rest["has_more"] == (len(everything) > 4)


def test_filters_by_end_time_status_and_id(market: MarketServer, http: httpx.Client) -> None:
    early = submit(http, market, "filters")
    market.advance(5)
    late = submit(http, market, "filters")
    market.advance(11)
    items = listing(http, market, "filters").json()["items"]
    assert [i["request_id"] for i in items] == [late, early]
    early_end = datetime.fromisoformat(items[1]["ended_at"])  # late ended 5 s after it
    before, after = (early_end + timedelta(seconds=dt) for dt in (-1, 1))
    assert ids(listing(http, market, "filters", start=before.isoformat())) == [late, early]
    assert ids(listing(http, market, "filters", start=after.isoformat())) == [late]
    assert ids(listing(http, market, "filters", start=before.isoformat(), end=after.isoformat())) == [early]
    assert ids(listing(http, market, "filters", end=before.isoformat())) == []
    # The default window is the last 24 hours of ends.
    market.advance(25 * 3600)
    assert ids(listing(http, market, "filters")) == []
    assert ids(listing(http, market, "filters", request_id=early)) == [early]  # by id: 90 days back
    # Advancing the scenario clock moved every end 25 h into the (wall-clock) past.
    old = (before - timedelta(hours=25)).isoformat()
    assert ids(listing(http, market, "filters", start=old, request_id=early)) == [early]
    assert ids(listing(http, market, "filters", start=old, status="success")) == [late, early]
    assert ids(listing(http, market, "filters", start=old, status="error")) == []

    failed = submit(http, market, "failing")
    market.advance(11)
    assert ids(listing(http, market, "failing", status="error")) == [failed]
    assert ids(listing(http, market, "failing", status="success")) == []
    (item,) = listing(http, market, "failing", expand="payloads").json()["items"]
    assert item["status_code"] == 500 and item["json_output"]["error_type"] == "runner_server_error"


def test_a_request_cancelled_in_the_queue_is_listed_as_a_user_error(
    market: MarketServer, http: httpx.Client
) -> None:
    waiting = submit(http, market, "queued")
    assert ids(listing(http, market, "queued")) == []  # queued: not ended, not listed
    app = "/".join(MODEL.split("/")[:2])
    assert http.put(f"{market.base_url('queued')}/{app}/requests/{waiting}/cancel").status_code == 202
    (item,) = listing(http, market, "queued", status="user_error").json()["items"]
    assert item["request_id"] == waiting and item["status_code"] == 400
    assert item["started_at"] is None and item["duration"] == 0.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not base64!"}, "cursor"),
        ({"cursor": "MA=="}, "cursor"),  # page 0: pages count from 1
        ({"start": "yesterday"}, "start"),
        ({"start": "2025-01-01T00:00:00"}, "start"),  # no time zone
        ({"status": "done"}, "status"),
        ({"sort_by": "started_at"}, "sort_by"),
        ({"endpoint_id": f"{MODEL},"}, "endpoint_id"),
        ({"endpoint_id": ",".join([MODEL] * 51)}, "endpoint_id"),
    ],
)
def test_bad_parameters_answer_422_naming_the_field(
    market: MarketServer, http: httpx.Client, params: dict[str, Any], field: str
) -> None:
    response = listing(http, market, "north", **params)
    assert response.status_code == 422
    assert [err["loc"] for err in response.json()["detail"]] == [["query", field]]


def test_endpoint_id_is_required_and_the_caller_authenticated(
    market: MarketServer, http: httpx.Client
) -> None:
    url = f"{market.base_url('north')}/v1/models/requests/by-endpoint"
    missing = http.get(url)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "endpoint_id"]
    assert httpx.get(url, params={"endpoint_id": MODEL}).status_code == 401
    unknown = http.get(f"{market.url}/nobody/v1/models/requests/by-endpoint", params={"endpoint_id": MODEL})
    assert unknown.status_code == 404


def test_sort_by_duration_puts_the_longest_first(market: MarketServer, http: httpx.Client) -> None:
    sent = {submit(http, market, "varied", seed=seed) for seed in range(6)}
    market.advance(25)
    by_end = listing(http, market, "varied").json()["items"]
    by_duration = listing(http, market, "varied", sort_by="duration").json()["items"]
    assert {i["request_id"] for i in by_duration} == sent == {i["request_id"] for i in by_end}
    durations = [i["duration"] for i in by_duration]
    assert durations == sorted(durations, reverse=True) and durations[0] > durations[-1]
