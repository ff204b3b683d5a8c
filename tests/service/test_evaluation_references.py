"""Evaluations judged against the tenant's own reference photos: identity of real portraits, over
the API on both databases, scored in the request and by a worker."""

from __future__ import annotations

import base64
import json
import time
from importlib import resources
from typing import Any

import pytest
from service_fixtures import Service, ServiceFactory

from imagefunnel.errors import SpecError
from imagefunnel.service.evaluation_references import resolve_stored
from imagefunnel.service.timing import parse_server_timing


def _portrait(name: str) -> bytes:
    return (resources.files("imagefunnel.market") / "assets" / "portraits" / name).read_bytes()


def _upload(service: Service, name: str, headers: dict[str, str] | None = None) -> str:
    answer = service.client.post(
        "/v1/uploads", files={"file": (name, _portrait(name))}, headers=headers or service.a
    )
    assert answer.status_code in (200, 201), answer.text
    ref: str = answer.json()["ref"]
    return ref


def _headshots() -> list[tuple[str, tuple[str, bytes, str]]]:
    # Another photo of the same man, and a different man.
    return [
        ("images", ("obama_2.jpg", _portrait("obama_2.jpg"), "image/jpeg")),
        ("images", ("biden.jpg", _portrait("biden.jpg"), "image/jpeg")),
    ]


def _identity(result: dict[str, Any]) -> dict[str, Any]:
    dims = {d["name"]: d for d in result["result"]["dimensions"]}
    assert "identity" in dims, result["result"]["skipped"]
    found: dict[str, Any] = dims["identity"]
    return found


def _same_passes_other_fails(body: dict[str, Any]) -> None:
    same, other = body["results"]
    assert _identity(same)["passed"] is True, _identity(same)
    assert _identity(other)["passed"] is False, _identity(other)
    assert _identity(other)["value"] > _identity(same)["value"]


HEADSHOT_SPEC = {"prompts": ["a headshot"], "deliver": 1, "budget_usd": 1, "use_case": "headshot"}


def test_a_headshot_is_judged_for_identity_against_an_uploaded_reference(service: Service) -> None:
    ref = _upload(service, "obama_1.jpg")
    # Named beside the images, without a spec.
    answer = service.client.post(
        "/v1/evaluations",
        files=_headshots(),
        data={"use_case": "headshot", "reference": ref},
        headers=service.a,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    _same_passes_other_fails(body)
    assert body["references"] == [ref]
    assert "refs" in parse_server_timing(answer.headers["server-timing"])
    assert service.client.get(answer.headers["location"], headers=service.a).json() == body

    # Named in the spec, as a job names it (JSON body, base64 images).
    images = [
        {"name": n, "data": base64.b64encode(_portrait(n)).decode()} for n in ("obama_2.jpg", "biden.jpg")
    ]
    answer = service.client.post(
        "/v1/evaluations",
        json={"images": images, "spec": {**HEADSHOT_SPEC, "references": [ref]}},
        headers=service.a,
    )
    assert answer.status_code == 200, answer.text
    _same_passes_other_fails(answer.json())
    assert answer.json()["references"] == [ref]

    # Another tenant naming it is told it does not exist, and nothing is stored for it.
    for attempt in (
        {"files": _headshots(), "data": {"use_case": "headshot", "reference": ref}},
        {"json": {"images": images, "spec": {**HEADSHOT_SPEC, "references": [ref]}}},
    ):
        refused = service.client.post("/v1/evaluations", headers=service.b, **attempt)  # type: ignore[arg-type]
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "not_found"
        assert "references[0]" in refused.json()["error"]["message"]
    assert service.client.get("/v1/evaluations", headers=service.b).json() == []


def test_reference_files_sent_with_an_evaluation_are_kept_as_uploads(service: Service) -> None:
    files = [*_headshots(), ("reference", ("obama_1.jpg", _portrait("obama_1.jpg"), "image/jpeg"))]
    answer = service.client.post(
        "/v1/evaluations", files=files, data={"use_case": "headshot"}, headers=service.a
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    _same_passes_other_fails(body)
    (ref,) = body["references"]
    kept = service.client.get("/v1/uploads", headers=service.a).json()
    assert [u["ref"] for u in kept] == [ref] and kept[0]["filename"] == "obama_1.jpg"
    # The next evaluation names it instead of sending it again; a JSON reference file works too.
    again = service.client.post(
        "/v1/evaluations",
        json={
            "images": [{"name": "biden.jpg", "data": base64.b64encode(_portrait("biden.jpg")).decode()}],
            "use_case": "headshot",
            "references": [{"name": "o.jpg", "data": base64.b64encode(_portrait("obama_1.jpg")).decode()}],
        },
        headers=service.a,
    )
    assert again.status_code == 200, again.text
    assert again.json()["references"] == [ref]  # the same bytes: the same upload
    assert _identity(again.json()["results"][0])["passed"] is False


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_bad_reference_names_are_refused_before_anything_is_kept(service: Service) -> None:
    files = [
        *_headshots(),
        ("reference", ("obama_1.jpg", _portrait("obama_1.jpg"), "image/jpeg")),
        ("reference", (None, "/etc/passwd")),
    ]
    refused = service.client.post(
        "/v1/evaluations", files=files, data={"use_case": "headshot"}, headers=service.a
    )
    assert refused.status_code == 422, refused.text
    assert "references[1]" in refused.json()["error"]["message"]
    theirs = _upload(service, "obama_3.jpg", service.b)
    files[-1] = ("reference", (None, theirs))
    refused = service.client.post(
        "/v1/evaluations", files=files, data={"use_case": "headshot"}, headers=service.a
    )
    assert refused.status_code == 404 and "references[1]" in refused.json()["error"]["message"]
    assert service.client.get("/v1/uploads", headers=service.a).json() == []  # the file was not kept
    many = [("reference", (None, "upload:" + f"{i:032x}")) for i in range(9)]
    refused = service.client.post(
        "/v1/evaluations", files=[*_headshots(), *many], data={"use_case": "headshot"}, headers=service.a
    )
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_many_references"
    # A reference photo without a face says so, naming the photo.
    noface = service.client.post(
        "/v1/evaluations",
        files=[*_headshots(), ("reference", ("dog.jpg", _portrait("dog_donna.jpg"), "image/jpeg"))],
        data={"use_case": "headshot"},
        headers=service.a,
    )
    assert noface.status_code == 422 and "no detectable face" in noface.json()["error"]["message"], (
        noface.text
    )
    assert "/" not in noface.json()["error"]["message"].split(":", 1)[-1]  # no server path


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_queued_evaluation_is_scored_by_a_worker_against_its_references(
    make_service: ServiceFactory,
) -> None:
    service: Service = make_service(sync_evaluation_images=1)
    ref = _upload(service, "obama_1.jpg")
    answer = service.client.post(
        "/v1/evaluations",
        files=_headshots(),
        data={"use_case": "headshot", "reference": ref},
        headers=service.a,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["references"] == [ref]
    url = answer.headers["location"]
    for _ in range(400):
        body: dict[str, Any] = service.client.get(url, headers=service.a).json()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert body["status"] == "done", body
    _same_passes_other_fails(body)
    assert body["references"] == [ref]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_worker_fails_an_evaluation_whose_reference_is_not_the_tenants_or_gone(service: Service) -> None:
    runtime = service.runtime
    ref = _upload(service, "obama_1.jpg")
    stored = json.dumps({"evaluation_references": [ref]})
    a = runtime.tenancy.ensure_tenant("tenant-a").id
    b = runtime.tenancy.ensure_tenant("tenant-b").id
    resolved = resolve_stored(stored, a, runtime.uploads, runtime.blobs)
    assert [p.read_bytes() for p in resolved.references] == [_portrait("obama_1.jpg")]
    with pytest.raises(SpecError, match=r"references\[0\]: upload:[0-9a-f]{32} is not available"):
        resolve_stored(stored, b, runtime.uploads, runtime.blobs)
    spec = json.dumps({**HEADSHOT_SPEC, "references": [ref]})
    with pytest.raises(SpecError, match="not available"):
        resolve_stored(spec, b, runtime.uploads, runtime.blobs)
