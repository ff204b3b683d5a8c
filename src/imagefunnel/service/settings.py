"""The service's settings: one pydantic-settings model, read from ``IMAGEFUNNEL_*`` variables.

Nothing reads settings at import time: ``create_app(settings)`` is handed them. Outside the
``development`` environment the validator refuses what is only safe on a laptop: webhooks to
private or loopback addresses, and a store left on the default SQLite file in the working folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]

_DEFAULT_DATA_DIR = Path("imagefunnel-service")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEFUNNEL_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=_DEFAULT_DATA_DIR, description="blobs (and the SQLite store by default)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")

    # Workers in this process (0: an API-only process; workers run elsewhere on the same store).
    workers: int = Field(default=1, ge=0, le=64)
    jobs_per_worker: int = Field(default=2, ge=1, le=64)
    lease_s: float = Field(default=30.0, gt=0)
    poll_s: float = Field(default=0.5, gt=0)
    cancel_poll_s: float = Field(default=0.5, gt=0)
    # Quote each job as a worker first claims it, before it buys anything (about a second for a
    # 60-image job); a spec with a ``confidence`` is quoted regardless.
    quote_jobs: bool = True

    # Hostile input: every limit is checked before the expensive step it protects.
    max_body_bytes: int = Field(default=8_000_000, ge=1_000)  # whole request, counted as it arrives
    max_upload_bytes: int = Field(default=64_000_000, ge=1_000)  # evaluation uploads
    max_spec_bytes: int = Field(default=200_000, ge=1_000)
    max_json_depth: int = Field(default=20, ge=2)
    max_image_bytes: int = Field(default=10_000_000, ge=1_000)
    max_image_pixels: int = Field(default=25_000_000, ge=1_000)
    max_images_per_evaluation: int = Field(default=64, ge=1)
    sync_evaluation_images: int = Field(default=4, ge=1, description="more than this: 202 and a worker")
    max_references_per_evaluation: int = Field(default=8, ge=0, description="reference photos sent with one")

    # Uploads a tenant keeps (POST /v1/uploads, reference photos sent with evaluations and forms):
    # a new one past either limit is refused (429 upload_quota_exceeded); re-sending kept bytes is not.
    upload_quota_count: int = Field(default=1000, ge=1)
    upload_quota_bytes: int = Field(default=2_000_000_000, ge=1_000)
    # Retention: `imagefunnel uploads prune` removes uploads no job or evaluation has named for this
    # many days (None: it needs --days; nothing is removed on its own).
    upload_retention_days: float | None = Field(default=None, gt=0)

    # Tenants: requests per second and burst when a tenant has no limits of its own.
    rate_per_s: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=100, ge=1)

    # Webhooks: attempts and backoff (base * 2**attempt, capped), and where they may go.
    webhook_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_poll_s: float = Field(default=0.5, gt=0)
    webhook_allow_private: bool | None = Field(
        default=None, description="allow loopback/private targets (default: only in development)"
    )

    provider_sample_s: float = Field(default=30.0, gt=0, description="provider health/price sampling")
    sse_poll_s: float = Field(default=0.25, gt=0)
    # The embedded emulated market (imagefunnel serve without --no-market).
    market_scenario: str = "demo"

    @model_validator(mode="after")
    def _safe_outside_development(self) -> ServiceSettings:
        if self.environment == "production":
            if self.webhook_allow_private:
                raise ValueError("webhook_allow_private must not be set in production (SSRF)")
            if self.database_url is None:
                raise ValueError("set IMAGEFUNNEL_DATABASE_URL in production (PostgreSQL)")
        return self

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'imagefunnel.db'}"

    @property
    def private_webhooks_allowed(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.environment == "development"
