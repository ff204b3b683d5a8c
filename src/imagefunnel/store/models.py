"""SQLAlchemy 2 tables. Portable between SQLite (default) and PostgreSQL: no dialect-specific types."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec_json: Mapped[str] = mapped_column(Text)
    # queued|running|delivered|partial|failed (queued: waiting for a worker to claim it)
    status: Mapped[str] = mapped_column(String(20), default="running")
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    deliver: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The worker running a claimed job and until when its claim holds (see store.queue); a job run
    # directly (the CLI) has no lease and is never claimed by a worker.
    lease_owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JobQuoteRow(Base):
    """The quote a worker made for a queued job before buying anything (the first claim's, kept on
    every re-claim), and once the job ended, how it held: JSON of ``quote_check`` records."""

    __tablename__ = "job_quotes"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    record_json: Mapped[str] = mapped_column(Text)  # QuoteRecord
    check_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # QuoteCheck, once ended
    quoted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerRow(Base):
    """One attempt to buy one generation from one provider: intent (quote) first, outcome after."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    request_id: Mapped[str] = mapped_column(String(80), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    wave: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(80))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # dispatched|succeeded|failed|cancelled|interrupted|lost
    quoted_usd: Mapped[float] = mapped_column(Float)
    charged_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    provider_request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_ledger_request_attempt", "request_id", "attempt", unique=True),)


class CandidateRow(Base):
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    request_id: Mapped[str] = mapped_column(String(80), unique=True)
    wave: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(80))
    provider_request_id: Mapped[str] = mapped_column(String(200))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    phash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quality: Mapped[float] = mapped_column(Float, default=0.0)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    charged_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScoreRow(Base):
    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    dimension: Mapped[str] = mapped_column(String(80))
    tier: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
