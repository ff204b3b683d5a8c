"""Response models of the API (they are also its OpenAPI schema at ``/docs``)."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel

from imagefunnel.forecast import JobQuote
from imagefunnel.quote_check import QuoteCheck
from imagefunnel.store.job_quotes import StoredQuote
from imagefunnel.store.models import CandidateRow, JobRow, LedgerRow, ScoreRow
from imagefunnel.store.service_models import WebhookDeliveryRow

__all__ = [
    "CandidateOut",
    "CandidatePage",
    "DeliveryOut",
    "DimensionOut",
    "JobLinks",
    "JobOut",
    "JobPage",
    "JobQuoteOut",
    "LedgerOut",
    "candidate_out",
    "delivery_out",
    "job_out",
    "ledger_out",
    "quote_out",
]


class JobLinks(BaseModel):
    self: str
    events: str
    candidates: str
    delivered_zip: str
    dashboard: str


class JobQuoteOut(BaseModel):
    """The quote a worker made as it first claimed the job, before anything was bought, and once
    the job ended, quoted vs actual (``check``: spend, wall time, candidates, delivery, the plan)."""

    quoted_at: datetime
    quote: JobQuote
    requote: JobQuote | None
    unavailable: list[str]
    check: QuoteCheck | None


class JobOut(BaseModel):
    id: str
    name: str
    status: str
    stop_reason: str | None
    deliver: int
    delivered: int
    spent_usd: float
    created_at: datetime
    finished_at: datetime | None
    spec: dict[str, object]
    links: JobLinks
    quote: JobQuoteOut | None = None  # None: not quoted (yet, or quoting is off for the service)


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    next_offset: int | None


class DimensionOut(BaseModel):
    dimension: str
    tier: int
    value: float | None
    threshold: float | None
    passed: bool
    reason: str


class CandidateOut(BaseModel):
    id: int
    wave: int
    provider: str
    passed: bool
    delivered: bool
    rank: int | None
    quality: float
    charged_usd: float
    latency_s: float
    image: str
    failed: list[str]
    dimensions: list[DimensionOut]


class CandidatePage(BaseModel):
    items: list[CandidateOut]
    total: int
    next_offset: int | None


class LedgerOut(BaseModel):
    job_id: str
    request_id: str
    attempt: int
    wave: int
    provider: str
    model: str
    status: str
    quoted_usd: float
    charged_usd: float | None
    error: str | None
    latency_s: float | None
    started_at: datetime
    finished_at: datetime | None


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_type: str
    msg_id: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    delivered_at: datetime | None


def quote_out(stored: StoredQuote) -> JobQuoteOut:
    record = stored.record
    return JobQuoteOut(
        quoted_at=stored.quoted_at,
        quote=record.quote,
        requote=record.requote,
        unavailable=record.unavailable,
        check=stored.check,
    )


def job_out(row: JobRow, *, spent_usd: float, quote: StoredQuote | None = None) -> JobOut:
    base = f"/v1/jobs/{row.id}"
    return JobOut(
        id=row.id,
        name=row.name,
        status=row.status,
        stop_reason=row.stop_reason,
        deliver=row.deliver,
        delivered=row.delivered,
        spent_usd=round(spent_usd, 6),
        created_at=row.created_at,
        finished_at=row.finished_at,
        spec=json.loads(row.spec_json),
        links=JobLinks(
            self=base,
            events=f"{base}/events",
            candidates=f"{base}/candidates",
            delivered_zip=f"{base}/delivered.zip",
            dashboard=f"/jobs/{row.id}",
        ),
        quote=None if quote is None else quote_out(quote),
    )


def candidate_out(row: CandidateRow, scores: list[ScoreRow]) -> CandidateOut:
    return CandidateOut(
        id=row.id,
        wave=row.wave,
        provider=row.provider,
        passed=row.passed,
        delivered=row.delivered,
        rank=row.rank,
        quality=row.quality,
        charged_usd=row.charged_usd,
        latency_s=row.latency_s,
        image=f"/v1/jobs/{row.job_id}/images/{row.id}",
        failed=[s.reason for s in scores if not s.passed],
        dimensions=[
            DimensionOut(
                dimension=s.dimension,
                tier=s.tier,
                value=s.value,
                threshold=s.threshold,
                passed=s.passed,
                reason=s.reason,
            )
            for s in scores
        ],
    )


def ledger_out(row: LedgerRow) -> LedgerOut:
    return LedgerOut.model_validate(row, from_attributes=True)


def delivery_out(row: WebhookDeliveryRow) -> DeliveryOut:
    return DeliveryOut.model_validate(row, from_attributes=True)
