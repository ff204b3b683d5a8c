"""Tenants: every route that names a resource answers another tenant 404; keys, rates, budget caps."""

from __future__ import annotations

import re

from service_fixtures import Service, spec

_PARAMS = {"job_id", "evaluation_id", "key_id", "webhook_id", "candidate_id", "position", "upload_id"}


def _photo() -> bytes:
    from importlib import resources

    return (resources.files("imagefunnel.market") / "assets" / "portraits" / "grace_hopper.jpg").read_bytes()


def test_another_tenant_gets_404_on_every_route_that_names_a_resource(make_service) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(workers=0)
    job_id = service.submit(spec()).json()["id"]
    evaluation = service.client.post(
        "/v1/evaluations", files=[("images", ("face.jpg", _photo(), "image/jpeg"))], headers=service.a
    )
    assert evaluation.status_code == 200, evaluation.text
    key_id = service.client.get("/v1/keys", headers=service.a).json()[0]["id"]
    upload = service.client.post(
        "/v1/uploads", files={"file": ("me.jpg", _photo())}, headers=service.a
    ).json()
    hook = service.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=service.a
    ).json()
    values = {
        "job_id": job_id,
        "evaluation_id": evaluation.json()["id"],
        "key_id": key_id,
        "webhook_id": hook["id"],
        "candidate_id": "1",
        "position": "0",
        "upload_id": upload["id"],
    }
    checked = 0
    paths = service.client.get("/openapi.json").json()["paths"]  # every route the API has
    for template, operations in paths.items():
        names = set(re.findall(r"{(\w+)}", template))
        if not names & _PARAMS:
            continue
        assert names <= _PARAMS, f"{template}: add its parameters to this test"
        path = template.format(**values)
        for method in (m.upper() for m in operations):
            body = {"items": [{"image": 0, "verdict": "accept"}]} if method == "POST" else None
            answer = service.client.request(method, path, headers=service.b, json=body)
            assert answer.status_code == 404, f"{method} {path}: {answer.status_code}"
            assert answer.json()["error"]["code"] == "not_found"
            checked += 1
    assert checked >= 14
    # ...and lists show nothing of tenant A's.
    assert service.client.get("/v1/jobs", headers=service.b).json()["total"] == 0
    assert service.client.get("/v1/evaluations", headers=service.b).json() == []
    assert service.client.get("/v1/webhooks", headers=service.b).json() == []
    assert service.client.get("/v1/uploads", headers=service.b).json() == []
    # The owner still sees everything (nothing above was changed by the other tenant's requests).
    assert service.client.get(f"/v1/jobs/{job_id}", headers=service.a).json()["status"] == "queued"
    assert len(service.client.get("/v1/webhooks", headers=service.a).json()) == 1


def test_requests_need_a_valid_key_and_a_revoked_key_stops_working(make_service) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(workers=0)
    assert service.client.get("/v1/jobs").status_code == 401
    wrong = service.client.get("/v1/jobs", headers={"Authorization": "Bearer ifk_nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    created = service.client.post("/v1/keys", json={"name": "ci"}, headers=service.a).json()
    mine = {"Authorization": f"Bearer {created['secret']}"}
    assert service.client.get("/v1/jobs", headers=mine).status_code == 200
    assert service.client.delete(f"/v1/keys/{created['id']}", headers=service.a).status_code == 204
    assert service.client.get("/v1/jobs", headers=mine).status_code == 401
    stored = service.runtime.tenancy.keys(service.runtime.tenancy.ensure_tenant("tenant-a").id)
    assert all(created["secret"] not in (k.key_hash, k.prefix) for k in stored)  # only a hash is kept


def test_a_tenant_over_its_rate_gets_429_with_retry_after(make_service) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(workers=0)
    service.runtime.tenancy.ensure_tenant("tenant-b", rate_per_s=0.01, burst=2)
    answers = [service.client.get("/v1/jobs", headers=service.b) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert service.client.get("/v1/jobs", headers=service.a).status_code == 200  # others unaffected


def test_a_tenant_budget_cap_holds_open_jobs_budgets(make_service) -> None:  # type: ignore[no-untyped-def]
    service: Service = make_service(workers=0)
    service.runtime.tenancy.ensure_tenant("tenant-a", budget_usd=1.5)
    assert service.submit(spec(budget_usd=1.0)).status_code == 201
    refused = service.submit(spec(budget_usd=1.0))
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "tenant_budget_exceeded"
    assert service.submit(spec(budget_usd=0.5)).status_code == 201
    assert service.submit(spec(budget_usd=1.0), headers=service.b).status_code == 201  # B has no cap
