"""The charge/quote drift this store's jobs saw, read back from the ledger every job already writes.

A job's router learns per provider how far its bills drift from its quotes (``PriceBook``) and,
until now, forgot it when the job ended: the next job, and its quote, started at the list price
again. Each ledger row holds the quote a request was bought at and what it was charged, so the
newest rows replayed in order, at the times they finished, give a book that knows what a
long-lived router would know now, the learned drift faded by its age (the book's half-life).
No table of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from imagefunnel.errors import StoreError
from imagefunnel.providers.base import PriceUnit, Quote
from imagefunnel.routing.pricebook import PriceBook
from imagefunnel.store.models import LedgerRow

__all__ = ["LATEST", "learned_prices"]

LATEST = 200  # the newest billed requests: what the drift's half-life has not long forgotten


class _ReplayClock:
    """Each replayed charge's own time while replaying, then the wall clock."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.at: float | None = None

    def __call__(self) -> float:
        return self._now() if self.at is None else self.at


def _epoch(moment: datetime) -> float:
    # SQLite hands back naive datetimes; the store writes UTC.
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def learned_prices(
    engine: Engine, *, latest: int = LATEST, now: Callable[[], float] = time.time
) -> PriceBook:
    """A price book holding the drift of the ``latest`` billed requests of this store, as of now."""
    query = (
        select(
            LedgerRow.provider,
            LedgerRow.model,
            LedgerRow.quoted_usd,
            LedgerRow.charged_usd,
            LedgerRow.finished_at,
        )
        .where(
            LedgerRow.status == "succeeded",
            LedgerRow.charged_usd.is_not(None),
            LedgerRow.finished_at.is_not(None),
        )
        .order_by(LedgerRow.finished_at.desc(), LedgerRow.id.desc())
        .limit(latest)
    )
    try:
        with Session(engine) as session:
            rows = session.execute(query).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the ledger's charges: {exc}") from exc
    clock = _ReplayClock(now)
    book = PriceBook(clock=clock)
    for provider, model, quoted, charged, finished in reversed(rows):
        if finished is None or charged is None:
            continue
        clock.at = _epoch(finished)
        # The unit price is not in the ledger: the charge is compared with the quote as it was.
        book.observe_charge(Quote(provider, model, quoted, PriceUnit.PER_IMAGE, 0.0), charged)
    clock.at = None
    return book
