"""``create_app(settings)``: the service as one FastAPI app (API, dashboard, metrics, workers).

The app owns a :class:`ServiceRuntime` for its lifetime: the lifespan starts the worker, evaluation,
webhook and monitor tasks and stops them (handing running jobs back to the queue). Nothing is read
from the environment here: settings come in, so tests build as many apps as they like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from imagefunnel.providers.base import Provider
from imagefunnel.service.api.main import include_routers
from imagefunnel.service.deps import require_tenant
from imagefunnel.service.errors import install_error_handlers
from imagefunnel.service.limits import BodyLimitMiddleware
from imagefunnel.service.metrics import build_registry
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.service.settings import ServiceSettings
from imagefunnel.workers import ProvidersFactory

__all__ = ["create_app"]

_UPLOAD_PATHS = ("/v1/evaluations", "/evaluations", "/v1/uploads", "/jobs/new")


def _extra_routers() -> tuple[APIRouter, ...]:
    """Routers other packages contribute when installed (workflow runs), behind the API key every
    other resource asks for: a workflow run spends on the ComfyUI boxes."""
    try:
        from imagefunnel.workflows.api import create_router  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return ()
    guarded = APIRouter(dependencies=[Depends(require_tenant)])
    guarded.include_router(create_router())
    return (guarded,)


def create_app(
    settings: ServiceSettings,
    *,
    providers: ProvidersFactory,
    catalog: Sequence[Provider] = (),
    run_background: bool = True,
) -> FastAPI:
    """The service. ``providers`` makes each job's adapters; ``catalog`` (one adapter per provider
    and model) answers discovery and is probed for the provider charts. ``run_background=False``
    serves the API without workers, webhook delivery or probes (an API-only process)."""
    runtime = ServiceRuntime.open(settings, providers=providers, catalog=catalog)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_background:
            await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="imagefunnel",
        summary="Generate more than you need, score every candidate, deliver the best K at the least cost.",
        version="1",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.metrics = build_registry(runtime.store)
    install_error_handlers(app)
    include_routers(app, _extra_routers())
    from imagefunnel.service.dashboard.routes import install_dashboard

    install_dashboard(app)

    def limit_for(path: str) -> int:
        return settings.max_upload_bytes if path.startswith(_UPLOAD_PATHS) else settings.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    return app
