"""``/healthz`` (the process answers), ``/readyz`` (its store answers), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from imagefunnel.errors import StoreError
from imagefunnel.service.deps import RuntimeDep
from imagefunnel.service.errors import ApiError

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> dict[str, str]:
    def ping() -> None:
        with runtime.store.session() as s:
            s.execute(text("SELECT 1"))

    try:
        await asyncio.to_thread(ping)
    except StoreError as exc:
        raise ApiError(503, "not_ready", f"store unavailable: {type(exc.__cause__).__name__}") from None
    return {"status": "ready", "workers": str(len(runtime.workers))}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
