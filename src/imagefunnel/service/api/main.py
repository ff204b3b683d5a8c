"""The API: one router per resource, included here and nowhere else."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from imagefunnel.service.api import evaluations, health, jobs, quotes, uploads
from imagefunnel.service.api.discovery import dimensions_router, models_router, providers_router
from imagefunnel.service.api.keys import keys_router, webhooks_router

__all__ = ["include_routers"]

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    quotes.router,  # before jobs: /v1/jobs/quote is not a job id
    jobs.router,
    uploads.router,
    evaluations.router,
    providers_router,
    models_router,
    dimensions_router,
    keys_router,
    webhooks_router,
)


def include_routers(app: FastAPI, extra: tuple[APIRouter, ...] = ()) -> None:
    """Every resource router, then ``extra`` ones (e.g. workflow runs: ``POST /v1/workflows/{name}/runs``)."""
    for router in (*ROUTERS, *extra):
        app.include_router(router)
