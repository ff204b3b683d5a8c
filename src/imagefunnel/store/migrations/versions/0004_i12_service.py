"""service: tenants, API keys, job ownership, idempotency keys, job events, cancel requests,
webhooks and their delivery log, evaluations with per-image results and feedback, provider samples

Revision ID: 0004_i12_service
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i12_service"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("budget_usd", sa.Float(), nullable=True),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        _when("created_at"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_table(
        "service_jobs",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("budget_usd", sa.Float(), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(20), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "job_cancellations",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        _when("requested_at"),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False, index=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        _when("created_at"),
        _when("disabled_at", nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id"), nullable=False, index=True),
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column("job_id", sa.String(36), nullable=True, index=True),
        sa.Column("evaluation_id", sa.String(36), nullable=True, index=True),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("msg_id", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("created_at"),
        _when("delivered_at", nullable=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("use_case", sa.String(40), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=True),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(120), nullable=True),
        _when("created_at"),
        _when("finished_at", nullable=True),
    )
    op.create_table(
        "evaluation_images",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "evaluation_id", sa.String(36), sa.ForeignKey("evaluations.id"), nullable=False, index=True
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(40), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.UniqueConstraint("evaluation_id", "position", name="uq_evaluation_image_position"),
    )
    op.create_table(
        "evaluation_feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "evaluation_id", sa.String(36), sa.ForeignKey("evaluations.id"), nullable=False, index=True
        ),
        sa.Column(
            "image_id", sa.Integer(), sa.ForeignKey("evaluation_images.id"), nullable=False, index=True
        ),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("dimensions", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "provider_samples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(80), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        _when("at"),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("price_usd", sa.Float(), nullable=True),
        sa.Column("pass_rate", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "provider_samples",
        "evaluation_feedback",
        "evaluation_images",
        "evaluations",
        "webhook_deliveries",
        "webhooks",
        "job_events",
        "job_cancellations",
        "idempotency_keys",
        "service_jobs",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table)
