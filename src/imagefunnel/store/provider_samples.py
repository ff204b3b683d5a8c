"""Samples of each provider's health, price and learned pass rate over time (the provider charts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from imagefunnel.store.models import utcnow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import ProviderSampleRow

__all__ = ["ProviderSample", "ProviderSamples"]


@dataclass(frozen=True, slots=True)
class ProviderSample:
    provider: str
    model: str
    ok: bool
    state: str
    latency_s: float | None
    price_usd: float | None
    pass_rate: float | None


class ProviderSamples:
    def __init__(self, store: Store, *, keep: timedelta = timedelta(days=7)) -> None:
        self._store = store
        self._keep = keep

    def add(self, samples: Sequence[ProviderSample], *, at: datetime | None = None) -> None:
        at = at or utcnow()
        with self._store.session() as s:
            s.add_all(
                ProviderSampleRow(
                    provider=x.provider,
                    model=x.model,
                    at=at,
                    ok=x.ok,
                    state=x.state,
                    latency_s=x.latency_s,
                    price_usd=x.price_usd,
                    pass_rate=x.pass_rate,
                )
                for x in samples
            )
            s.execute(delete(ProviderSampleRow).where(ProviderSampleRow.at < at - self._keep))

    def history(self, provider: str, *, limit: int = 500) -> list[ProviderSampleRow]:
        """The newest ``limit`` samples of ``provider``, oldest first."""
        with self._store.session() as s:
            rows = list(
                s.scalars(
                    select(ProviderSampleRow)
                    .where(ProviderSampleRow.provider == provider)
                    .order_by(ProviderSampleRow.at.desc(), ProviderSampleRow.id.desc())
                    .limit(limit)
                )
            )
        return rows[::-1]
