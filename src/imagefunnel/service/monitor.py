"""What the service knows about its providers: capabilities, live price, health, circuit state and
learned pass rates, refreshed in the background and sampled into the store for the charts.

The circuit state is the routing library's own :class:`~imagefunnel.routing.HealthTracker`, fed with
every ledger attempt of every job (and the active probes), so it reflects all jobs, not one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from imagefunnel.errors import ProviderError
from imagefunnel.providers.base import GenerationRequest, Provider
from imagefunnel.routing.health import HealthTracker
from imagefunnel.store import Store
from imagefunnel.store.models import LedgerRow
from imagefunnel.store.pass_rates import SqlPassRates
from imagefunnel.store.provider_samples import ProviderSample, ProviderSamples

__all__ = ["ModelStatus", "ProviderMonitor", "ProviderStatus"]

log = logging.getLogger(__name__)
_PROBE_SIZE = 1024  # quotes are for one 1024x1024 image, the common size


@dataclass(frozen=True, slots=True)
class ModelStatus:
    model: str
    max_width: int
    max_height: int
    reference_images: bool
    price_usd: float | None
    price_unit: str | None
    unit_price_usd: float | None
    state: str
    error_rate: float
    latency_s: float | None
    pass_rates: dict[str, float] = field(default_factory=dict)  # by use case


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    ok: bool
    detail: str
    probe_latency_s: float
    models: tuple[ModelStatus, ...]


class ProviderMonitor:
    def __init__(self, store: Store, catalog: Sequence[Provider], samples: ProviderSamples) -> None:
        self._store = store
        self._catalog = list(catalog)
        self._samples = samples
        self._health = HealthTracker(clock=time.monotonic)
        self._seen_ledger_id = 0
        self._pass_rates = SqlPassRates(store.engine)
        self.statuses: tuple[ProviderStatus, ...] = ()

    async def aclose(self) -> None:
        for provider in self._catalog:
            await provider.aclose()

    async def run(self, stop: asyncio.Event, *, every_s: float) -> None:
        while not stop.is_set():
            await self.refresh()
            try:
                async with asyncio.timeout(every_s):
                    await stop.wait()
            except TimeoutError:
                pass

    async def refresh(self) -> tuple[ProviderStatus, ...]:
        await asyncio.to_thread(self._replay_ledger)
        rates: dict[tuple[str, str], dict[str, float]] = {}
        for rate in await asyncio.to_thread(lambda: list(self._pass_rates.load_pass_rates())):
            rates.setdefault((rate.key.provider, rate.key.model), {})[rate.key.use_case] = round(rate.mean, 4)
        statuses = await asyncio.gather(*(self._status(p, rates) for p in self._catalog))
        merged: dict[str, ProviderStatus] = {}
        for status in statuses:  # one adapter per (provider, model): show each provider once
            old = merged.get(status.name)
            merged[status.name] = (
                status
                if old is None
                else ProviderStatus(
                    status.name,
                    old.ok and status.ok,
                    old.detail or status.detail,
                    max(old.probe_latency_s, status.probe_latency_s),
                    old.models + status.models,
                )
            )
        self.statuses = tuple(sorted(merged.values(), key=lambda s: s.name))
        await asyncio.to_thread(self._sample)
        return self.statuses

    def _replay_ledger(self) -> None:
        with self._store.session() as s:
            rows = list(
                s.scalars(
                    select(LedgerRow)
                    .where(LedgerRow.id > self._seen_ledger_id, LedgerRow.status != "dispatched")
                    .order_by(LedgerRow.id)
                    .limit(5000)
                )
            )
        for row in rows:
            self._seen_ledger_id = max(self._seen_ledger_id, row.id)
            if row.status == "succeeded":
                self._health.record_success(row.provider, row.latency_s or 0.0, model=row.model)
            elif row.status == "failed":
                # Named as the router names a failure it saw itself ("Type: message").
                error = f"{row.error_type}: {row.error or ''}" if row.error_type else (row.error or "")
                self._health.record_failure(row.provider, error, model=row.model)

    async def _status(
        self, provider: Provider, rates: dict[tuple[str, str], dict[str, float]]
    ) -> ProviderStatus:
        health = await provider.health()
        self._health.record_probe(provider.name, health.ok)
        caps = await provider.capabilities()
        models = []
        for model in sorted(caps.models):
            request = GenerationRequest("probe", model, "probe", width=_PROBE_SIZE, height=_PROBE_SIZE)
            try:
                quote = await provider.quote(request)
                price: tuple[float | None, str | None, float | None] = (
                    quote.usd,
                    quote.unit.value,
                    quote.unit_price_usd,
                )
            except ProviderError:
                price = (None, None, None)
            view = self._health.view(provider.name, model)
            models.append(
                ModelStatus(
                    model=model,
                    max_width=caps.max_width,
                    max_height=caps.max_height,
                    reference_images=caps.supports_reference_images,
                    price_usd=price[0],
                    price_unit=price[1],
                    unit_price_usd=price[2],
                    state=view.state.value,
                    error_rate=round(view.error_rate, 4),
                    latency_s=view.latency_s,
                    pass_rates=rates.get((provider.name, model), {}),
                )
            )
        return ProviderStatus(provider.name, health.ok, health.detail, health.latency_s, tuple(models))

    def _sample(self) -> None:
        samples = [
            ProviderSample(
                provider=status.name,
                model=m.model,
                ok=status.ok,
                state=m.state,
                latency_s=m.latency_s if m.latency_s is not None else status.probe_latency_s,
                price_usd=m.price_usd,
                pass_rate=max(m.pass_rates.values()) if m.pass_rates else None,
            )
            for status in self.statuses
            for m in status.models
        ]
        self._samples.add(samples)
