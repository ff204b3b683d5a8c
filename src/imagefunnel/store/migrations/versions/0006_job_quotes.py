"""job quotes: the quote a worker makes for a queued job before buying, and how it held

Revision ID: 0006_job_quotes
Revises: 0005_uploads
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_job_quotes"
down_revision = "0005_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_quotes",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("check_json", sa.Text(), nullable=True),
        sa.Column("quoted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_quotes")
