"""Uploads on both databases: images a tenant's jobs name as ``upload:<id>`` instead of host paths."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from PIL import Image
from service_fixtures import Service, ServiceFactory, spec

from imagefunnel.errors import SpecError
from imagefunnel.market.images import AssetLibrary
from imagefunnel.market.server import MarketServer
from imagefunnel.service.references import resolve_uploads
from imagefunnel.spec import JobSpec


def _png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def _upload(
    service: Service, data: bytes, *, headers: dict[str, str] | None = None, name: str = "me.png"
) -> dict:  # type: ignore[type-arg]
    response = service.client.post("/v1/uploads", files={"file": (name, data)}, headers=headers or service.a)
    assert response.status_code in (200, 201), response.text
    body: dict = response.json()  # type: ignore[type-arg]
    return body


def _error(response: object, status: int, code: str, *, mentions: str = "") -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == code and mentions in error["message"], error
    message: str = error["message"]
    return message


def test_a_host_path_is_refused_as_source_as_well_as_reference(service: Service, tmp_path: object) -> None:
    # A background removal job's input photo is a path too: the server must not read it for a client.
    cutout = spec(use_case="background_removal", prompts=[], source="/etc/hostname")
    message = _error(service.submit(cutout), 422, "invalid_spec", mentions="source")
    assert "upload:<id>" in message  # says what to do instead
    _error(
        service.submit(spec(references=["../../etc/passwd"])), 422, "invalid_spec", mentions="references[0]"
    )
    yaml = b"prompts: [p]\ndeliver: 1\nbudget_usd: 1\nuse_case: generic\nsource: /etc/hostname\n"
    response = service.client.post(
        "/v1/jobs", content=yaml, headers={**service.a, "content-type": "application/yaml"}
    )
    _error(response, 422, "invalid_spec", mentions="source")
    # An evaluation's spec names no path either (uploads only).
    evaluation = service.client.post(
        "/v1/evaluations",
        files={"images": ("x.png", _png())},
        data={"spec": '{"prompts": ["p"], "deliver": 1, "budget_usd": 1, "source": "/etc/hostname"}'},
        headers=service.a,
    )
    _error(evaluation, 422, "invalid_spec", mentions="source")
    assert service.client.get("/v1/jobs", headers=service.a).json()["total"] == 0


def test_an_upload_is_stored_once_per_tenant_and_only_its_tenant_can_read_it(service: Service) -> None:
    data = _png()
    response = service.client.post("/v1/uploads", files={"file": ("../x/me.png", data)}, headers=service.a)
    assert response.status_code == 201, response.text
    first = response.json()
    assert (
        first["ref"] == f"upload:{first['id']}"
        and response.headers["location"] == f"/v1/uploads/{first['id']}"
    )
    assert (first["filename"], first["format"], first["width"], first["height"]) == ("me.png", "PNG", 64, 48)
    assert first["size_bytes"] == len(data)

    # The same bytes again, as a raw body this time: the same upload, answered 200.
    again = service.client.post(
        "/v1/uploads", content=data, headers={**service.a, "content-type": "image/png"}
    )
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert service.client.get(f"/v1/uploads/{first['id']}/image", headers=service.a).content == data
    assert [u["id"] for u in service.client.get("/v1/uploads", headers=service.a).json()] == [first["id"]]

    # Tenant B: not found (never "forbidden"), and its own upload of the same bytes is its own.
    for path in (f"/v1/uploads/{first['id']}", f"/v1/uploads/{first['id']}/image"):
        _error(service.client.get(path, headers=service.b), 404, "not_found")
    theirs = _upload(service, data, headers=service.b)
    assert theirs["id"] != first["id"]
    assert service.client.get("/v1/uploads", headers={}).status_code == 401


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_uploads_that_are_not_safe_images_are_refused_before_they_are_kept(
    make_service: ServiceFactory,
) -> None:
    service = make_service(max_image_bytes=50_000, max_image_pixels=1_000_000)
    post = service.client.post
    _error(
        post("/v1/uploads", files={"file": ("a.png", b"#!/bin/sh\nrm -rf /\n")}, headers=service.a),
        422,
        "invalid_image",
        mentions="a.png",
    )
    # Declared as a PNG, the bytes are a GIF: the bytes decide.
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    kept = post("/v1/uploads", content=gif.getvalue(), headers={**service.a, "content-type": "image/png"})
    assert kept.json()["format"] == "GIF"
    _error(
        post("/v1/uploads", files={"file": ("big.png", b"\x89PNG" + bytes(60_000))}, headers=service.a),
        413,
        "image_too_large",
    )
    # A decompression bomb: 4 megapixels of one colour compress to a few kilobytes.
    bomb = _png(2000, 2000, (0, 0, 0))
    assert len(bomb) < 50_000
    _error(
        post("/v1/uploads", files={"file": ("bomb.png", bomb)}, headers=service.a),
        413,
        "image_too_large",
        mentions="limit",
    )
    _error(
        post("/v1/uploads", content=b"hello", headers={**service.a, "content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    _error(post("/v1/uploads", files={"other": ("a.png", _png())}, headers=service.a), 422, "no_image")
    assert [u["id"] for u in service.client.get("/v1/uploads", headers=service.a).json()] == [
        kept.json()["id"]
    ]
    stored = [p.name for p in service.runtime.blobs.root.rglob("*") if p.is_file()]
    assert stored == [hashlib.sha256(gif.getvalue()).hexdigest()]  # nothing refused reached the blob store


def test_a_spec_may_name_only_its_own_tenants_uploads(service: Service) -> None:
    mine = _upload(service, _png())
    theirs = _upload(service, _png(color=(1, 2, 3)), headers=service.b)
    message = _error(
        service.submit(spec(references=[theirs["ref"]])), 404, "not_found", mentions="references[0]"
    )
    assert theirs["id"] in message
    _error(service.submit(spec(references=["upload:" + "0" * 32])), 404, "not_found")
    _error(
        service.submit(spec(references=["upload:../../etc/passwd"])),
        422,
        "invalid_spec",
        mentions="not an upload",
    )
    assert service.client.get("/v1/jobs", headers=service.a).json()["total"] == 0
    accepted = service.submit(spec(deliver=1, max_candidates=4, references=[mine["ref"]]))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["spec"]["references"] == [mine["ref"]]  # stored as named, no server path


def test_a_headshot_job_naming_an_uploaded_photo_is_judged_against_it(
    service: Service, market: MarketServer
) -> None:
    photo = _upload(service, AssetLibrary().file("obama_3.jpg"), name="obama.jpg")
    headshot = spec(
        deliver=1,
        max_candidates=6,
        use_case="headshot",
        prompts=["a professional headshot, studio light"],
        size={"width": 512, "height": 512},
        references=[photo["ref"]],
        budget_usd=2.0,
    )
    job = service.submit(headshot).json()
    done = service.wait(job["id"])
    assert done["status"] in ("delivered", "partial"), done
    candidates = service.client.get(f"/v1/jobs/{job['id']}/candidates", headers=service.a).json()["items"]
    assert candidates
    # The provider was sent the photo (it rendered its subject), and the scorer compared against it.
    rows = service.runtime.store.candidates(job["id"])
    assert {market.truth(r.provider_request_id).subject for r in rows} == {"obama"}
    scored = [c for c in candidates if any(d["dimension"] == "identity" for d in c["dimensions"])]
    assert scored, candidates


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_worker_resolves_uploads_to_their_blobs_and_fails_a_job_whose_upload_is_gone(
    service: Service,
) -> None:
    runtime = service.runtime
    photo = _upload(service, _png())
    tenant_a = runtime.tenancy.authenticate(service.a["Authorization"].removeprefix("Bearer "))
    named = JobSpec.model_validate(spec(use_case="background_removal", prompts=[], source=photo["ref"]))
    resolved = resolve_uploads(named, tenant_a.id, runtime.uploads, runtime.blobs)
    assert resolved.source is not None and resolved.source.read_bytes() == _png()
    # Another tenant's job naming the same id (had it slipped past submit) is refused at run time.
    tenant_b = runtime.tenancy.authenticate(service.b["X-API-Key"])
    with pytest.raises(SpecError, match="not available"):
        resolve_uploads(named, tenant_b.id, runtime.uploads, runtime.blobs)

    runtime.blobs.path(runtime.uploads.get(tenant_a.id, photo["id"]).blob_sha256).unlink()
    job = service.submit(spec(deliver=1, max_candidates=4, references=[photo["ref"]])).json()
    done = service.wait(job["id"])
    assert done["status"] == "failed" and "references[0]" in done["stop_reason"]
    assert str(runtime.blobs.root) not in done["stop_reason"]  # says which upload, not where it lived


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_job_naming_an_upload_resumes_in_a_new_process_with_the_photo_still_sent(
    make_service: ServiceFactory, market: MarketServer
) -> None:
    first = make_service()
    photo = _upload(first, AssetLibrary().file("obama_3.jpg"), name="obama.jpg")
    job = first.submit(spec(deliver=4, concurrency=1, max_candidates=40, references=[photo["ref"]])).json()
    for _ in range(400):
        if first.runtime.store.candidates(job["id"]):
            break
        time.sleep(0.05)
    first.client.__exit__(None, None, None)  # stops the workers: the running job goes back to the queue
    before = len(first.runtime.store.candidates(job["id"]))
    # A new process on the same store and blobs picks the job up where it stopped.
    second = make_service()
    done = second.wait(job["id"], headers=first.a)
    assert done["status"] in ("delivered", "partial"), done
    rows = second.runtime.store.candidates(job["id"])
    assert len(rows) > before >= 1
    assert {market.truth(r.provider_request_id).subject for r in rows} == {"obama"}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_background_removal_job_over_the_api_cuts_out_the_uploaded_photo(service: Service) -> None:
    portrait = AssetLibrary().file("grace_hopper.jpg")
    photo = _upload(service, portrait, name="grace.jpg")
    cutout = spec(
        deliver=1, use_case="background_removal", model="background-removal", prompts=[], source=photo["ref"]
    )
    job = service.submit(cutout).json()
    done = service.wait(job["id"])
    assert done["status"] == "delivered", done
    candidates = service.client.get(f"/v1/jobs/{job['id']}/candidates", headers=service.a).json()["items"]
    delivered = [c for c in candidates if c["delivered"]]
    assert len(delivered) == 1
    image = service.client.get(f"/v1/jobs/{job['id']}/images/{delivered[0]['id']}", headers=service.a)
    assert image.headers["content-type"] == "image/png"
    matte = Image.open(io.BytesIO(image.content))
    assert matte.mode == "RGBA" and matte.size == Image.open(io.BytesIO(portrait)).size
    alpha = matte.getchannel("A").histogram()
    assert alpha[0] > 0 and alpha[255] > 0  # a cutout: background gone, subject kept
