"""The evaluations API: verdicts for images people bring, batches with a webhook, feedback that
`imagefunnel calibrate` can read."""

from __future__ import annotations

import base64
import io
import time
from importlib import resources
from pathlib import Path

from PIL import Image
from service_fixtures import Service

from imagefunnel.evaluation import load_manifest
from imagefunnel.service.feedback import HUMAN_REJECT, export_feedback_set
from imagefunnel.service.timing import parse_server_timing


def _photo() -> bytes:
    return (resources.files("imagefunnel.market") / "assets" / "portraits" / "grace_hopper.jpg").read_bytes()


def _blank() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def test_sync_verdicts_feedback_and_export_for_calibration(make_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(workers=0)
    files = [
        ("images", ("hopper.jpg", _photo(), "image/jpeg")),
        ("images", ("<img src=x onerror=alert(1)>.png", _blank(), "image/png")),
    ]
    answer = service.client.post(
        "/v1/evaluations", files=files, data={"use_case": "generic"}, headers=service.a
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done" and body["images"] == 2
    photo, blank = body["results"]
    assert photo["passed"] is True and blank["passed"] is False
    assert any("uniformity" in issue for issue in blank["result"]["top_issues"])
    dims = {d["name"]: d for d in blank["result"]["dimensions"]}
    assert dims["uniformity"]["passed"] is False and dims["uniformity"]["threshold"] is not None
    assert blank["name"] == "<img src=x onerror=alert(1)>.png"  # kept as given; pages escape it
    timing = parse_server_timing(answer.headers["server-timing"])
    assert set(timing) == {"read", "decode", "score", "store", "total"}
    assert timing["total"] >= timing["read"] + timing["decode"] + timing["score"] + timing["store"]
    stored = service.client.get(answer.headers["location"], headers=service.a)
    assert stored.json() == body  # built in memory, as the store has it
    image = service.client.get(photo["image"], headers=service.a)
    assert image.content == _photo()

    feedback = {
        "items": [
            {"image": 0, "verdict": "reject", "dimensions": ["sharpness"], "note": "soft"},
            {"image": 1, "verdict": "accept"},
        ]
    }
    assert service.client.post(
        f"/v1/evaluations/{body['id']}/feedback", json=feedback, headers=service.a
    ).json() == {"recorded": 2}
    bad = service.client.post(
        f"/v1/evaluations/{body['id']}/feedback",
        json={"items": [{"image": 0, "verdict": "reject", "dimensions": ["shrapness"]}]},
        headers=service.a,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_dimension"

    runtime = service.runtime
    manifest = export_feedback_set(runtime.store, runtime.blobs, tmp_path / "set", evaluation_id=body["id"])
    loaded = load_manifest(tmp_path / "set")
    assert loaded == manifest
    labels = {image.clean: image for image in loaded.images}
    assert labels[False].defect == HUMAN_REJECT and labels[False].expect == ("sharpness",)
    assert (tmp_path / "set" / labels[True].file).read_bytes() == _blank()


def test_a_batch_is_queued_scored_by_a_worker_and_announced(make_service) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(sync_evaluation_images=1)
    hook = service.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["evaluation.*"]}, headers=service.a
    )
    assert hook.status_code == 201 and hook.json()["secret"].startswith("whsec_")
    images = [{"name": f"{i}.png", "data": base64.b64encode(_blank()).decode()} for i in range(2)]
    answer = service.client.post("/v1/evaluations", json={"images": images}, headers=service.a)
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert [r["passed"] for r in answer.json()["results"]] == [None, None]
    assert "score" not in parse_server_timing(answer.headers["server-timing"])  # a worker scores it
    url = answer.headers["location"]
    for _ in range(200):
        body = service.client.get(url, headers=service.a).json()
        if body["status"] == "done":
            break
        time.sleep(0.05)
    assert body["status"] == "done" and [r["passed"] for r in body["results"]] == [False, False]
    tenant = service.runtime.tenancy.ensure_tenant("tenant-a")
    deliveries = service.runtime.webhooks.deliveries(tenant.id, evaluation_id=body["id"])
    assert [d.event_type for d in deliveries] == ["evaluation.completed"]
