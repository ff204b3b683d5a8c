"""The store's charge/quote drift: the ledger's newest bills replayed into a price book, faded by age."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from imagefunnel.store import Store
from imagefunnel.store.models import LedgerRow
from imagefunnel.store.price_drift import learned_prices

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HALF_LIFE_S = 120.0  # the price book's default


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    s.start_job(job_id="j", name="j", spec_json="{}", deliver=1)
    yield s
    s.close()


def bill(
    store: Store, n: int, provider: str, quoted: float, charged: float, *, status: str = "succeeded"
) -> None:
    """Request ``n`` on ``provider``, quoted and charged so, finished ``n`` seconds after T0."""
    request_id = f"r-{n:05d}"
    store.begin_attempt(
        job_id="j", request_id=request_id, attempt=1, wave=1, provider=provider, model="m", quoted_usd=quoted
    )
    store.end_attempt(request_id=request_id, attempt=1, status=status, charged_usd=charged, latency_s=1.0)
    with store.session() as s:
        s.execute(
            update(LedgerRow)
            .where(LedgerRow.request_id == request_id)
            .values(finished_at=T0 + timedelta(seconds=n))
        )
        s.commit()


def at(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


def test_a_provider_billing_over_its_quote_is_priced_at_the_drift(store: Store) -> None:
    for n in range(3):
        bill(store, n, "listed", 0.01, 0.02)  # billed twice its quote, every time
    bill(store, 3, "steady", 0.01, 0.01)
    book = learned_prices(store.engine, now=lambda: at(3))
    # Bills a second apart, the last a second old: faded by a few seconds of the half-life.
    assert book.drift("listed", "m") == pytest.approx(2.0, rel=0.02)
    assert book.drift("listed", "m") < 2.0
    assert book.drift("steady", "m") == pytest.approx(1.0)
    assert book.drift("never", "m") == 1.0


def test_the_drift_fades_by_the_age_of_the_last_bill(store: Store) -> None:
    bill(store, 0, "listed", 0.01, 0.04)
    fresh = learned_prices(store.engine, now=lambda: at(0)).drift("listed", "m")
    aged = learned_prices(store.engine, now=lambda: at(HALF_LIFE_S)).drift("listed", "m")
    assert fresh == pytest.approx(4.0)
    assert aged == pytest.approx(2.0)  # log drift halved after one half-life
    assert learned_prices(store.engine, now=lambda: at(3600)).drift("listed", "m") == pytest.approx(
        1.0, abs=1e-6
    )


def test_only_the_newest_succeeded_bills_count(store: Store) -> None:
    bill(store, 0, "listed", 0.01, 0.05)  # old: beyond ``latest``
    bill(store, 1, "listed", 0.01, 0.03, status="failed")  # a failed attempt's charge is no price
    bill(store, 2, "listed", 0.01, 0.015)
    book = learned_prices(store.engine, latest=1, now=lambda: at(2))
    assert book.drift("listed", "m") == pytest.approx(1.5)
