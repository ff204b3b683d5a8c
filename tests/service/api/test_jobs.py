"""The jobs API on both databases: idempotent submit, the job's outputs, SSE resume, cancel."""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from service_fixtures import Service, spec


def _events(
    service: Service, job_id: str, *, last_event_id: str | None = None
) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    headers = dict(service.a)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with service.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return out


def test_a_submitted_job_runs_in_a_worker_streams_its_events_and_can_be_read_back(service: Service) -> None:
    response = service.submit(spec(deliver=2, max_candidates=20))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and response.headers["location"] == f"/v1/jobs/{job['id']}"

    events = _events(service, job["id"])  # follows the job live until its final event
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "wave_started" and kinds[-1] == "delivered" and "candidate_scored" in kinds
    ids = [int(i) for i, _, _ in events]
    assert ids == sorted(ids)
    resumed = _events(service, job["id"], last_event_id=str(ids[1]))
    assert [int(i) for i, _, _ in resumed] == ids[2:]

    done = service.client.get(f"/v1/jobs/{job['id']}", headers=service.a).json()
    assert (done["status"], done["delivered"]) == ("delivered", 2) and done["spent_usd"] > 0
    assert sorted(events[-1][2]["delivered_ids"]) == sorted(
        c["id"]
        for c in service.client.get(f"/v1/jobs/{job['id']}/candidates", headers=service.a).json()["items"]
        if c["delivered"]
    )

    page = service.client.get(f"/v1/jobs/{job['id']}/candidates", headers=service.a).json()
    assert page["total"] >= 2
    first = next(c for c in page["items"] if c["delivered"])
    assert {d["dimension"] for d in first["dimensions"]} >= {"sharpness"}
    assert all({"value", "threshold", "passed", "reason"} <= d.keys() for d in first["dimensions"])

    image = service.client.get(first["image"], headers=service.a)
    assert image.headers["content-type"] in ("image/png", "image/jpeg", "image/webp")
    assert Image.open(io.BytesIO(image.content)).size == (256, 256)

    archive = service.client.get(f"/v1/jobs/{job['id']}/delivered.zip", headers=service.a)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert len(z.namelist()) == 2

    ledger = service.client.get(f"/v1/jobs/{job['id']}/ledger", headers=service.a).json()
    assert ledger and all(row["quoted_usd"] > 0 for row in ledger)
    listing = service.client.get("/v1/jobs", params={"status": "delivered"}, headers=service.a).json()
    assert [j["id"] for j in listing["items"]] == [job["id"]]

    metrics = service.client.get("/metrics").text
    assert 'imagefunnel_jobs{status="delivered"} 1.0' in metrics
    assert 'imagefunnel_candidates_total{passed="true",provider="quick"}' in metrics
    assert service.client.get("/readyz").json()["status"] == "ready"


def test_same_idempotency_key_gives_the_same_job_and_a_different_body_is_a_conflict(make_service) -> None:  # type: ignore[no-untyped-def]
    service = make_service(workers=0)
    first = service.submit(spec(), **{"Idempotency-Key": "order-17"})
    again = service.submit(spec(), **{"Idempotency-Key": "order-17"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = service.submit(spec(deliver=3), **{"Idempotency-Key": "order-17"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    # The same key belongs to each tenant separately.
    theirs = service.submit(spec(deliver=3), headers=service.b, **{"Idempotency-Key": "order-17"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_concurrent_duplicate_submits_create_one_job(make_service) -> None:  # type: ignore[no-untyped-def]
    service = make_service(workers=0)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: service.submit(spec(), **{"Idempotency-Key": "race"}), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert service.client.get("/v1/jobs", headers=service.a).json()["total"] == 1


def test_cancel_stops_a_running_job_and_the_ledger_closes_every_attempt(service: Service) -> None:
    job_id = service.submit(spec(deliver=400, budget_usd=50.0, concurrency=2, max_candidates=400)).json()[
        "id"
    ]
    service.wait(job_id, until=("running",))
    for _ in range(200):  # until it has bought something
        if service.client.get(f"/v1/jobs/{job_id}/ledger", headers=service.a).json():
            break
    answer = service.client.post(f"/v1/jobs/{job_id}/cancel", headers=service.a)
    assert answer.status_code == 202
    done = service.wait(job_id)
    assert done["status"] == "cancelled" and "cancelled on request" in done["stop_reason"]
    ledger = service.client.get(f"/v1/jobs/{job_id}/ledger", headers=service.a).json()
    assert ledger and all(row["status"] != "dispatched" for row in ledger)
    assert all(row["charged_usd"] is not None for row in ledger)  # what was still charged is said
    candidates = service.client.get(f"/v1/jobs/{job_id}/candidates", headers=service.a).json()["total"]
    assert candidates < 400
    assert _events(service, job_id)[-1][1] == "cancelled"


def test_cancel_of_a_queued_job_ends_it_before_it_starts(make_service) -> None:  # type: ignore[no-untyped-def]
    service = make_service(workers=0)
    job_id = service.submit(spec()).json()["id"]
    done = service.client.post(f"/v1/jobs/{job_id}/cancel", headers=service.a).json()
    assert done["status"] == "cancelled"
    assert service.runtime.store.ledger(job_id) == []
    assert _events(service, job_id)[-1][1] == "cancelled"
