"""``POST /v1/jobs/quote``: what a job would cost, take and deliver, before anything is bought.

The spec is read exactly as ``POST /v1/jobs`` reads it; the job's router asks this service's
providers for prices (as a job's first request does) and the forecast plays the job over the pass
rates this service has learned. Nothing is bought and no job is stored. Registered before the
jobs router, and a POST, so it never meets ``/v1/jobs/{job_id}`` (whose POST routes all have a
suffix).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from imagefunnel.errors import NoProviderAvailable
from imagefunnel.forecast import JobQuote
from imagefunnel.quoting import DEFAULT_SIMULATIONS, quote_job, store_pass_rates, store_prices, store_score_s
from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.errors import ApiError
from imagefunnel.service.inputs import parse_spec_body

__all__ = ["MAX_SIMULATIONS", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The forecast's cost grows with its runs; a tenant may not make one request hold a core for long.
MAX_SIMULATIONS = 20_000

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "description": "a job spec"}},
            "application/yaml": {"schema": {"type": "string", "description": "a job spec as YAML"}},
        },
    }
}


@router.post("/quote", response_model=JobQuote, openapi_extra=_SPEC_BODY)
async def quote(
    request: Request,
    _tenant: TenantDep,
    runtime: RuntimeDep,
    confidence: Annotated[float | None, Query(gt=0.0, lt=1.0)] = None,
    simulations: Annotated[int, Query(ge=1, le=MAX_SIMULATIONS)] = DEFAULT_SIMULATIONS,
    seed: Annotated[int | None, Query(ge=0)] = None,
) -> JobQuote:
    """Quote a job (spec as JSON or YAML, as for ``POST /v1/jobs``): spend (expected, p50, p95),
    candidates, wall time, P(deliver all K), the providers it would use and why, and the smallest
    budget reaching ``confidence`` (default: the spec's, else 0.95). Nothing is bought."""
    settings = runtime.settings
    spec = parse_spec_body(
        await request.body(),
        request.headers.get("content-type", ""),
        max_bytes=settings.max_spec_bytes,
        max_depth=settings.max_json_depth,
    )
    book = await asyncio.to_thread(store_pass_rates, runtime.store.engine)
    score_s = await asyncio.to_thread(store_score_s, runtime.store.engine, spec)
    prices = await asyncio.to_thread(store_prices, runtime.store.engine)
    try:
        return await quote_job(
            spec,
            runtime.providers(spec),
            pass_rates=book,
            score_s=score_s,
            prices=prices,
            confidence=confidence,
            simulations=simulations,
            seed=seed,
        )
    except NoProviderAvailable as exc:
        raise ApiError(503, "no_provider_available", str(exc)) from None
