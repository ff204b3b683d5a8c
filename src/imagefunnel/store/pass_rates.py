"""Persisted pass rates: the router's Beta posteriors survive restarts and are shared by processes.

``SqlPassRates(store.engine)`` implements :class:`imagefunnel.routing.PassRatePersistence`; the
table comes with Alembic revision ``0002``. Writes are upserts of the whole posterior (last writer
wins between processes: two workers lose at most each other's latest verdicts, never the prior).
The upsert is one ``INSERT ... ON CONFLICT DO UPDATE`` statement: a select-then-insert (``merge``)
lets two workers that learn the same key's first verdict at once both insert, and one fails.
"""

from __future__ import annotations

from collections.abc import Iterable

import stamina
from sqlalchemy import Float, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from imagefunnel.errors import StoreError
from imagefunnel.routing.passrates import PassRate, PassRateKey
from imagefunnel.store.models import Base

__all__ = ["PassRateRow", "SqlPassRates"]


class PassRateRow(Base):
    __tablename__ = "pass_rates"

    provider: Mapped[str] = mapped_column(String(80), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(40), primary_key=True)
    alpha: Mapped[float] = mapped_column(Float)
    beta: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)  # seconds on the pass-rate book's (wall) clock


class SqlPassRates:
    """The ``pass_rates`` table behind the routing ``PassRatePersistence`` protocol."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def load_pass_rates(self) -> Iterable[PassRate]:
        try:
            with self._sessions() as session:
                rows = list(session.scalars(select(PassRateRow)))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot load pass rates: {exc}") from exc
        return [
            PassRate(PassRateKey(r.provider, r.model, r.use_case), r.alpha, r.beta, r.updated_at)
            for r in rows
        ]

    def save_pass_rate(self, rate: PassRate) -> None:
        try:
            self._upsert(rate)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot save the pass rate of {rate.key}: {exc}") from exc

    # SQLite answers "database is locked" while another process writes: a short retry rides it out.
    @stamina.retry(on=OperationalError, attempts=3, wait_initial=0.02, wait_max=0.2)
    def _upsert(self, rate: PassRate) -> None:
        key = rate.key
        values = {
            "provider": key.provider,
            "model": key.model,
            "use_case": key.use_case,
            "alpha": rate.alpha,
            "beta": rate.beta,
            "updated_at": rate.updated_at,
        }
        with self._sessions.begin() as session:
            statement = self._insert(PassRateRow).values(**values)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["provider", "model", "use_case"],
                    set_={
                        "alpha": statement.excluded.alpha,
                        "beta": statement.excluded.beta,
                        "updated_at": statement.excluded.updated_at,
                    },
                )
            )
