"""Helpers of the service tests: settings for speed, a client per tenant, a small job spec."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from imagefunnel.service import ServiceSettings

MODEL = "fal-ai/flux/dev"
TERMINAL = ("delivered", "partial", "failed", "cancelled")


def fast_settings(tmp_path: Path, store_url: str, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "service",
        "database_url": store_url,
        "poll_s": 0.05,
        "cancel_poll_s": 0.05,
        "sse_poll_s": 0.05,
        "webhook_poll_s": 0.05,
        "webhook_backoff_s": 0.05,
        "provider_sample_s": 60.0,
        **overrides,
    }
    return ServiceSettings(**values)


@dataclass
class Service:
    client: TestClient
    a: dict[str, str]  # headers of tenant A
    b: dict[str, str]  # headers of tenant B

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime  # type: ignore[attr-defined]

    def submit(self, spec: dict[str, Any], *, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.post("/v1/jobs", json=spec, headers={**(headers or self.a), **kw})

    def wait(
        self, job_id: str, *, headers: dict[str, str] | None = None, until: tuple[str, ...] = TERMINAL
    ) -> dict[str, Any]:
        for _ in range(600):
            job: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}", headers=headers or self.a).json()
            if job["status"] in until:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job['status']}")


def spec(deliver: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "name": "service test",
        "prompts": ["a studio product photo"],
        "use_case": "generic",
        "size": {"width": 256, "height": 256},
        "deliver": deliver,
        "budget_usd": 1.0,
        "deadline_s": 60,
        "seed": 1,
        **extra,
    }


ServiceFactory = Callable[..., Service]
