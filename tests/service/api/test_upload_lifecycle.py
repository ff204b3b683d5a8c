"""An upload's life: deleted by its tenant (not while queued or running work names it), kept within
a per-tenant quota, and pruned once nothing has named it for a while."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import Service, ServiceFactory, spec
from sqlalchemy import update
from typer.testing import CliRunner

from imagefunnel.cli.app import app
from imagefunnel.store.models import utcnow
from imagefunnel.store.service_models import UploadRow


def _portrait(name: str) -> bytes:
    return (resources.files("imagefunnel.market") / "assets" / "portraits" / name).read_bytes()


def _post(service: Service, name: str, headers: dict[str, str] | None = None) -> Any:
    return service.client.post(
        "/v1/uploads", files={"file": (name, _portrait(name))}, headers=headers or service.a
    )


def _upload(service: Service, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = _post(service, name, headers)
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


def _blob(service: Service, upload: dict[str, Any]) -> Path:
    row = service.runtime.uploads.get(service.runtime.tenancy.ensure_tenant("tenant-a").id, upload["id"])
    path: Path = service.runtime.blobs.path(row.blob_sha256)
    return path


def _error(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code, answer.json()
    message: str = answer.json()["error"]["message"]
    return message


def test_a_tenant_deletes_its_own_upload_and_its_bytes_unless_others_hold_them(service: Service) -> None:
    mine = _upload(service, "obama_1.jpg")
    blob = _blob(service, mine)
    assert blob.is_file()
    _error(service.client.delete(f"/v1/uploads/{mine['id']}", headers=service.b), 404, "not_found")
    assert service.client.delete(f"/v1/uploads/{mine['id']}", headers=service.a).status_code == 204
    _error(service.client.get(f"/v1/uploads/{mine['id']}", headers=service.a), 404, "not_found")
    _error(service.client.delete(f"/v1/uploads/{mine['id']}", headers=service.a), 404, "not_found")
    assert not blob.exists()  # nothing else held those bytes
    # The same bytes are both tenants' uploads: deleting one keeps the other's photo.
    a, b = _upload(service, "obama_2.jpg"), _upload(service, "obama_2.jpg", service.b)
    assert service.client.delete(f"/v1/uploads/{a['id']}", headers=service.a).status_code == 204
    kept = service.client.get(f"/v1/uploads/{b['id']}/image", headers=service.b)
    assert kept.status_code == 200 and kept.content == _portrait("obama_2.jpg")


def test_an_upload_named_by_queued_work_is_not_deleted_until_it_ends(make_service: ServiceFactory) -> None:
    service = make_service(workers=0, sync_evaluation_images=1)  # nothing is claimed: work stays queued
    photo, other = _upload(service, "obama_1.jpg"), _upload(service, "obama_3.jpg")
    job = service.submit(spec(use_case="headshot", references=[photo["ref"]])).json()
    message = _error(
        service.client.delete(f"/v1/uploads/{photo['id']}", headers=service.a), 409, "upload_in_use"
    )
    assert f"job {job['id']}" in message
    evaluation = service.client.post(
        "/v1/evaluations",
        files=[("images", (n, _portrait(n), "image/jpeg")) for n in ("obama_2.jpg", "biden.jpg")],
        data={"use_case": "headshot", "reference": other["ref"]},
        headers=service.a,
    )
    assert evaluation.status_code == 202, evaluation.text
    message = _error(
        service.client.delete(f"/v1/uploads/{other['id']}", headers=service.a), 409, "upload_in_use"
    )
    assert f"evaluation {evaluation.json()['id']}" in message
    # Once the job has ended (cancelled before it started), its photo may go.
    assert service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=service.a).status_code == 202
    assert service.wait(job["id"])["status"] == "cancelled"
    assert service.client.delete(f"/v1/uploads/{photo['id']}", headers=service.a).status_code == 204


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_uploads_past_the_tenants_quota_are_refused_naming_the_limit(make_service: ServiceFactory) -> None:
    service = make_service(upload_quota_count=2)
    first = _upload(service, "obama_1.jpg")
    _upload(service, "obama_2.jpg")
    message = _error(_post(service, "obama_3.jpg"), 429, "upload_quota_exceeded")
    assert message.startswith("upload_quota_count:") and "at most 2" in message
    assert _post(service, "obama_1.jpg").status_code == 200  # bytes kept already cost nothing more
    assert _post(service, "obama_3.jpg", service.b).status_code == 201  # another tenant's own quota
    # A reference file sent with an evaluation is an upload too.
    refused = service.client.post(
        "/v1/evaluations",
        files=[
            ("images", ("biden.jpg", _portrait("biden.jpg"), "image/jpeg")),
            ("reference", ("obama_3.jpg", _portrait("obama_3.jpg"), "image/jpeg")),
        ],
        data={"use_case": "headshot"},
        headers=service.a,
    )
    _error(refused, 429, "upload_quota_exceeded")
    assert service.client.delete(f"/v1/uploads/{first['id']}", headers=service.a).status_code == 204
    assert _post(service, "obama_3.jpg").status_code == 201

    small = len(_portrait("obama_1.jpg")) + len(_portrait("obama_2.jpg")) - 1
    service = make_service(upload_quota_bytes=small)  # the same store: a new tenant, with nothing kept
    c = {"X-API-Key": service.runtime.tenancy.create_key("tenant-c").secret}
    _upload(service, "obama_1.jpg", c)
    message = _error(_post(service, "obama_2.jpg", c), 429, "upload_quota_exceeded")
    assert message.startswith("upload_quota_bytes:") and str(small) in message


def test_prune_removes_uploads_nothing_has_named_for_the_retention_days(
    make_service: ServiceFactory, store_url: str, tmp_path: Path
) -> None:
    service = make_service(workers=0)
    stale, named, fresh = (_upload(service, n) for n in ("obama_1.jpg", "obama_2.jpg", "obama_3.jpg"))
    old = utcnow() - timedelta(days=10)
    with service.runtime.store.session() as s:
        s.execute(
            update(UploadRow).where(UploadRow.id.in_([stale["id"], named["id"]])).values(created_at=old)
        )
    job = service.submit(spec(use_case="headshot", references=[named["ref"]])).json()  # named today
    assert service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=service.a).status_code == 202
    assert service.wait(job["id"])["status"] == "cancelled"

    args = [
        "uploads",
        "prune",
        "--days",
        "5",
        "--data",
        str(tmp_path / "service"),
        "--database-url",
        store_url,
    ]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert [line.split("\t")[0] for line in dry.stdout.splitlines()] == [stale["id"]]
    assert _blob(service, stale).is_file()  # a dry run removes nothing
    blob = _blob(service, stale)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [stale["id"]]
    listed = {u["id"] for u in service.client.get("/v1/uploads", headers=service.a).json()}
    assert listed == {named["id"], fresh["id"]} and not blob.exists()
    # Without --days or the setting, it says what to give instead of guessing.
    bare = CliRunner().invoke(app, args[:2] + args[4:])
    assert bare.exit_code == 2 and "IMAGEFUNNEL_UPLOAD_RETENTION_DAYS" in bare.output
