"""Deployed ComfyUI workflows in the service app: mounted, and behind the API key like every resource."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_fixtures import ServiceFactory


def test_workflow_runs_are_served_to_tenants_only(
    make_service: ServiceFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEFUNNEL_WORKFLOWS", str(tmp_path / "no-workflows-yet"))
    monkeypatch.delenv("IMAGEFUNNEL_COMFYUI_SERVERS", raising=False)
    service = make_service()
    client = service.client
    assert "/v1/workflows/{name}/runs" in client.get("/openapi.json").json()["paths"]
    assert client.get("/v1/workflows").status_code == 401
    assert client.post("/v1/workflows/blur/runs", json={"inputs": {}}).status_code == 401
    assert client.get("/v1/workflows", headers=service.a).json() == []
    unknown = client.post("/v1/workflows/blur/runs", json={"inputs": {}}, headers=service.a)
    assert unknown.status_code == 404
