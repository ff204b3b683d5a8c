"""``Annotated`` dependencies: routes ask for ``RuntimeDep`` or ``TenantDep`` and stay short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagefunnel.service.auth import authenticate_request
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.store.tenancy import Tenant

__all__ = ["RuntimeDep", "TenantDep", "get_runtime", "require_tenant"]


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def require_tenant(request: Request) -> Tenant:
    runtime = get_runtime(request)
    return authenticate_request(request, runtime.tenancy, runtime.limiter)


async def _runtime(request: Request) -> ServiceRuntime:
    # async: FastAPI runs a plain-function dependency on a worker thread: a hop per request, for a lookup
    return get_runtime(request)


RuntimeDep = Annotated[ServiceRuntime, Depends(_runtime)]
TenantDep = Annotated[Tenant, Depends(require_tenant)]
