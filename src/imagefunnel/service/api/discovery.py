"""``/v1/providers``, ``/v1/models``, ``/v1/dimensions``: what this service can buy and judge.

Provider and model data come from the provider monitor's latest refresh (live prices, health,
circuit state, learned pass rates); dimensions come from the scorer registry's declared metadata.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from imagefunnel.scoring import default_registry
from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.monitor import ProviderStatus

__all__ = ["dimensions_router", "models_router", "providers_router"]

providers_router = APIRouter(prefix="/v1/providers", tags=["providers"])
models_router = APIRouter(prefix="/v1/models", tags=["models"])
dimensions_router = APIRouter(prefix="/v1/dimensions", tags=["dimensions"])


class ModelOnProvider(BaseModel):
    model: str
    state: str
    price_usd: float | None
    price_unit: str | None
    unit_price_usd: float | None
    error_rate: float
    latency_s: float | None
    pass_rates: dict[str, float]


class ProviderOut(BaseModel):
    name: str
    healthy: bool
    detail: str
    probe_latency_s: float
    models: list[ModelOnProvider]


class ModelOut(BaseModel):
    model: str
    max_width: int
    max_height: int
    reference_images: bool
    price_units: list[str]
    providers: list[str]
    cheapest_usd: float | None


class DimensionOut(BaseModel):
    name: str
    tier: int
    direction: str
    range: tuple[float, float]
    unit: str
    default_threshold: float
    cost: float
    needs: list[str]
    use_cases: list[str]
    optional: bool
    fail_label: str
    description: str


async def _statuses(runtime: RuntimeDep) -> tuple[ProviderStatus, ...]:
    return runtime.monitor.statuses or await runtime.monitor.refresh()


@providers_router.get("", response_model=list[ProviderOut])
async def list_providers(_tenant: TenantDep, runtime: RuntimeDep) -> list[ProviderOut]:
    return [
        ProviderOut(
            name=s.name,
            healthy=s.ok,
            detail=s.detail,
            probe_latency_s=s.probe_latency_s,
            models=[
                ModelOnProvider(
                    model=m.model,
                    state=m.state,
                    price_usd=m.price_usd,
                    price_unit=m.price_unit,
                    unit_price_usd=m.unit_price_usd,
                    error_rate=m.error_rate,
                    latency_s=m.latency_s,
                    pass_rates=m.pass_rates,
                )
                for m in s.models
            ],
        )
        for s in await _statuses(runtime)
    ]


@models_router.get("", response_model=list[ModelOut])
async def list_models(_tenant: TenantDep, runtime: RuntimeDep) -> list[ModelOut]:
    by_model: dict[str, ModelOut] = {}
    for status in await _statuses(runtime):
        for m in status.models:
            out = by_model.setdefault(
                m.model,
                ModelOut(
                    model=m.model,
                    max_width=0,
                    max_height=0,
                    reference_images=False,
                    price_units=[],
                    providers=[],
                    cheapest_usd=None,
                ),
            )
            out.max_width = max(out.max_width, m.max_width)
            out.max_height = max(out.max_height, m.max_height)
            out.reference_images = out.reference_images or m.reference_images
            out.providers.append(status.name)
            if m.price_unit and m.price_unit not in out.price_units:
                out.price_units.append(m.price_unit)
            if m.price_usd is not None:
                out.cheapest_usd = (
                    m.price_usd if out.cheapest_usd is None else min(out.cheapest_usd, m.price_usd)
                )
    return sorted(by_model.values(), key=lambda m: m.model)


@dimensions_router.get("", response_model=list[DimensionOut])
def list_dimensions(_tenant: TenantDep) -> list[DimensionOut]:
    return [
        DimensionOut(
            name=d.info.name,
            tier=d.info.tier,
            direction=d.info.direction.value,
            range=d.info.value_range,
            unit=d.info.unit,
            default_threshold=d.info.default_threshold,
            cost=d.info.cost,
            needs=sorted(n.value for n in d.info.needs),
            use_cases=sorted(d.info.use_cases),
            optional=d.info.optional,
            fail_label=d.info.fail_label,
            description=d.info.description,
        )
        for d in sorted(default_registry, key=lambda d: (d.info.tier, d.info.cost, d.name))
    ]
