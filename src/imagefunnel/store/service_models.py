"""Tables of the HTTP service: tenants and their keys, job ownership, events, webhooks, evaluations.

Every row a tenant can reach carries ``tenant_id``, so each query is scoped by tenant at the source
(a job of another tenant is simply not found). Portable between SQLite and PostgreSQL; the schema
comes with Alembic revisions ``0004_i12_service`` and ``0005_uploads``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imagefunnel.store.models import Base, utcnow

__all__ = [
    "ApiKeyRow",
    "EvaluationFeedbackRow",
    "EvaluationImageRow",
    "EvaluationRow",
    "IdempotencyRow",
    "JobCancellationRow",
    "JobEventRow",
    "ProviderSampleRow",
    "ServiceJobRow",
    "TenantRow",
    "UploadRow",
    "WebhookDeliveryRow",
    "WebhookRow",
]


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Most the tenant's jobs may commit together (spent by finished jobs + budgets of open ones).
    budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Token bucket: sustained requests per second and burst size (None: the service's default).
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKeyRow(Base):
    """Only the SHA-256 of a key is kept: keys carry 256 random bits, so a fast hash is enough."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(40))  # shown in listings to tell keys apart
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ServiceJobRow(Base):
    """Which tenant owns a job (jobs run by the CLI have no row here and no owner)."""

    __tablename__ = "service_jobs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    budget_usd: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdempotencyRow(Base):
    """A submit's ``Idempotency-Key``: the same key and body give the same resource back."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(20))  # "job" | "evaluation"
    resource_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobCancellationRow(Base):
    """A cancel request; the worker running the job sees it on its next heartbeat."""

    __tablename__ = "job_cancellations"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobEventRow(Base):
    """One funnel event, in order; ``id`` is the SSE event id a client resumes from."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookRow(Base):
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(100))  # whsec_<base64>: needed to sign, so kept
    events: Mapped[str] = mapped_column(Text)  # JSON list of event types ("*" for all)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebhookDeliveryRow(Base):
    """One message to one endpoint and how its delivery went; ``msg_id`` is stable across retries."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    evaluation_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    msg_id: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # queued|running|done|failed
    use_case: Mapped[str] = mapped_column(String(40))
    spec_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    images: Mapped[int] = mapped_column(Integer)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvaluationImageRow(Base):
    __tablename__ = "evaluation_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None until scored
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: dimensions, skipped

    __table_args__ = (UniqueConstraint("evaluation_id", "position", name="uq_evaluation_image_position"),)


class EvaluationFeedbackRow(Base):
    """A person's accept or reject of one evaluated image (the newest one counts)."""

    __tablename__ = "evaluation_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(ForeignKey("evaluations.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("evaluation_images.id"), index=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    dimensions: Mapped[str] = mapped_column(Text, default="[]")  # JSON: the dimensions a reject blames
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProviderSampleRow(Base):
    """A provider's health, price and learned pass rate at one moment (the provider page's charts)."""

    __tablename__ = "provider_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(80), index=True)
    model: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(20))  # circuit breaker state
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    price_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    pass_rate: Mapped[float | None] = mapped_column(Float, nullable=True)


class UploadRow(Base):
    """An image a tenant uploaded for its jobs to name (``upload:<id>``); the bytes are a blob.

    One row per tenant and content: uploading the same bytes again answers with the same id."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(10))  # as sniffed from the bytes: PNG, JPEG, WEBP, GIF
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("tenant_id", "blob_sha256", name="uq_upload_tenant_blob"),)
