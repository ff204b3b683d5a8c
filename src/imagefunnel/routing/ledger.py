"""The cost ledger: quote at dispatch, charge at completion, expected-vs-actual by job/provider/day.

:class:`AttemptLedger` is where the router writes each attempt twice, intent and outcome, and in
between the provider's id for it as soon as the provider accepts it (the store implements it and
makes it durable, so a crash never hides a request the provider holds). :class:`SpendBook` is the router's own in-memory tally of the same numbers, and
:func:`reconcile` turns any attempt rows (the book's, or the store's ``LedgerRow``s) into the
expected-vs-actual report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

__all__ = [
    "AttemptLedger",
    "AttemptRow",
    "Grouping",
    "NullLedger",
    "SpendBook",
    "SpendLine",
    "reconcile",
]

Grouping = Literal["job", "provider", "day"]


class AttemptLedger(Protocol):
    """Where the router records what it buys (the store implements it)."""

    def begin_attempt(
        self,
        *,
        job_id: str,
        request_id: str,
        attempt: int,
        wave: int,
        provider: str,
        model: str,
        quoted_usd: float,
    ) -> None: ...

    def end_attempt(
        self,
        *,
        request_id: str,
        attempt: int,
        status: str,
        charged_usd: float,
        latency_s: float,
        provider_request_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None: ...

    def submitted(self, *, request_id: str, attempt: int, provider_request_id: str) -> None:
        """The provider accepted the attempt under ``provider_request_id`` (before its result)."""
        ...


class NullLedger:
    """Records nothing (benchmarks that keep their own books)."""

    def begin_attempt(
        self,
        *,
        job_id: str,
        request_id: str,
        attempt: int,
        wave: int,
        provider: str,
        model: str,
        quoted_usd: float,
    ) -> None:
        return None

    def submitted(self, *, request_id: str, attempt: int, provider_request_id: str) -> None:
        return None

    def end_attempt(
        self,
        *,
        request_id: str,
        attempt: int,
        status: str,
        charged_usd: float,
        latency_s: float,
        provider_request_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        return None


class AttemptRow(Protocol):
    """The fields of an attempt the report needs (the store's ``LedgerRow`` has them)."""

    @property
    def job_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def quoted_usd(self) -> float: ...
    @property
    def charged_usd(self) -> float | None: ...
    @property
    def started_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class SpendLine:
    """Expected vs actual for one group. ``expected_usd`` sums the quotes of the attempts that
    produced an image (the ones a quote promised a price for); failures are usually free and
    are counted apart."""

    key: str
    attempts: int
    succeeded: int
    quoted_usd: float  # every attempt's quote, as reserved against the budget
    expected_usd: float  # quotes of succeeded attempts
    charged_usd: float  # what the providers charged, failures included
    charged_succeeded_usd: float

    @property
    def drift_usd(self) -> float:
        return self.charged_succeeded_usd - self.expected_usd

    @property
    def drift_pct(self) -> float:
        return 100.0 * self.drift_usd / self.expected_usd if self.expected_usd > 0 else math.nan


@dataclass(frozen=True, slots=True)
class _Row:
    job_id: str
    provider: str
    status: str
    quoted_usd: float
    charged_usd: float | None
    started_at: datetime


def _day(started_at: datetime) -> str:
    started = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return started.astimezone(UTC).date().isoformat()


def _add(totals: list[float], *, ok: bool, quoted_usd: float, charged_usd: float | None) -> None:
    charged = quoted_usd if charged_usd is None else charged_usd
    totals[0] += 1
    totals[1] += ok
    totals[2] += quoted_usd
    totals[3] += quoted_usd if ok else 0.0
    totals[4] += charged
    totals[5] += charged if ok else 0.0


def _lines(acc: dict[str, list[float]]) -> list[SpendLine]:
    return [SpendLine(key, int(v[0]), int(v[1]), v[2], v[3], v[4], v[5]) for key, v in sorted(acc.items())]


def _zero() -> list[float]:
    return [0.0] * 6


def reconcile(rows: Iterable[AttemptRow], *, by: Grouping) -> list[SpendLine]:
    """Expected vs actual per job, provider or UTC day, sorted by key. An attempt still in flight
    (no charge yet) counts its quote as charged: spend is never hidden."""
    acc: dict[str, list[float]] = defaultdict(_zero)
    for row in rows:
        key = row.job_id if by == "job" else row.provider if by == "provider" else _day(row.started_at)
        _add(acc[key], ok=row.status == "succeeded", quoted_usd=row.quoted_usd, charged_usd=row.charged_usd)
    return _lines(acc)


class SpendBook:
    """The router's in-memory tally of attempts: an attempt is kept until it settles, then folded
    into totals per (job, provider, UTC day), so memory grows with jobs, not with requests."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], _Row] = {}
        self._totals: dict[tuple[str, str, str], list[float]] = defaultdict(_zero)

    def dispatched(
        self, *, job_id: str, request_id: str, attempt: int, provider: str, quoted_usd: float
    ) -> None:
        self._open[(request_id, attempt)] = _Row(
            job_id, provider, "dispatched", quoted_usd, None, datetime.now(UTC)
        )

    def settled(self, *, request_id: str, attempt: int, status: str, charged_usd: float) -> None:
        row = self._open.pop((request_id, attempt), None)
        if row is not None:
            key = (row.job_id, row.provider, _day(row.started_at))
            _add(
                self._totals[key],
                ok=status == "succeeded",
                quoted_usd=row.quoted_usd,
                charged_usd=charged_usd,
            )

    def report(self, *, by: Grouping) -> list[SpendLine]:
        index = {"job": 0, "provider": 1, "day": 2}[by]
        acc: dict[str, list[float]] = defaultdict(_zero)
        for triple, totals in self._totals.items():
            group = triple[index]
            acc[group] = [a + b for a, b in zip(acc[group], totals, strict=True)]
        for row in self._open.values():
            group = (row.job_id, row.provider, _day(row.started_at))[index]
            _add(acc[group], ok=False, quoted_usd=row.quoted_usd, charged_usd=None)
        return _lines(acc)

    @property
    def charged_usd(self) -> float:
        return math.fsum(totals[4] for totals in self._totals.values())
