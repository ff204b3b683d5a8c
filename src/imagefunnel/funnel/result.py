"""The job's outcome as a typed record (written to results.json, rendered in the report)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from imagefunnel.funnel.requests import prompt_for, request_number, seed_for
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store


class DimensionResult(BaseModel):
    dimension: str
    tier: int
    value: float | None
    threshold: float | None
    passed: bool
    reason: str


class CandidateResult(BaseModel):
    id: int
    request_id: str
    wave: int
    provider: str
    provider_request_id: str
    passed: bool
    delivered: bool
    rank: int | None
    quality: float
    charged_usd: float
    latency_s: float
    blob_sha256: str
    image_path: str  # where the image is; relative to results.json in a job's output folder
    failed: list[str]
    dimensions: list[DimensionResult]
    # What was asked and paid for: from the spec and the ledger's succeeded attempt.
    prompt: str = ""
    seed: int | None = None
    model: str = ""
    quoted_usd: float = 0.0


class ProviderSummary(BaseModel):
    provider: str
    attempts: int
    failed_attempts: int
    candidates: int
    passed: int
    quoted_usd: float
    charged_usd: float

    @property
    def pass_rate(self) -> float:
        return self.passed / self.candidates if self.candidates else 0.0


class JobResult(BaseModel):
    job_id: str
    name: str
    status: str
    stop_reason: str
    asked: int
    delivered: int
    candidates_generated: int
    candidates_passed: int
    failed_attempts: int
    quoted_usd: float
    spent_usd: float
    providers: list[ProviderSummary]
    candidates: list[CandidateResult]

    @property
    def pass_rate(self) -> float:
        return self.candidates_passed / self.candidates_generated if self.candidates_generated else 0.0

    @property
    def cost_per_delivered_usd(self) -> float | None:
        return self.spent_usd / self.delivered if self.delivered else None


def _provider_summaries(
    store: Store, job_id: str, candidates: list[CandidateResult]
) -> list[ProviderSummary]:
    rows: dict[str, ProviderSummary] = {}
    for entry in store.ledger(job_id):
        summary = rows.setdefault(
            entry.provider,
            ProviderSummary(
                provider=entry.provider,
                attempts=0,
                failed_attempts=0,
                candidates=0,
                passed=0,
                quoted_usd=0.0,
                charged_usd=0.0,
            ),
        )
        summary.attempts += 1
        summary.failed_attempts += entry.status == "failed"
        summary.quoted_usd += entry.quoted_usd
        summary.charged_usd += entry.charged_usd or 0.0
    for cand in candidates:
        rows[cand.provider].candidates += 1
        rows[cand.provider].passed += cand.passed
    return sorted(rows.values(), key=lambda s: s.provider)


def _asked(spec: JobSpec, request_id: str) -> dict[str, Any]:
    n = request_number(request_id)
    return {} if n is None else {"prompt": prompt_for(spec, n), "seed": seed_for(spec, n)}


def load_result(store: Store, blobs: BlobStore, job_id: str) -> JobResult:
    job = store.job(job_id)
    spec = JobSpec.model_validate_json(job.spec_json)
    rows = store.candidates(job_id)
    scores = store.scores([row.id for row in rows])
    bought = {e.request_id: e for e in store.ledger(job_id) if e.status == "succeeded"}
    candidates = [
        CandidateResult(
            id=row.id,
            request_id=row.request_id,
            wave=row.wave,
            provider=row.provider,
            provider_request_id=row.provider_request_id,
            passed=row.passed,
            delivered=row.delivered,
            rank=row.rank,
            quality=row.quality,
            charged_usd=row.charged_usd,
            latency_s=row.latency_s,
            blob_sha256=row.blob_sha256,
            image_path=str(blobs.path(row.blob_sha256)),
            failed=[s.reason for s in scores[row.id] if not s.passed],
            **_asked(spec, row.request_id),
            model=bought[row.request_id].model if row.request_id in bought else spec.model,
            quoted_usd=bought[row.request_id].quoted_usd if row.request_id in bought else 0.0,
            dimensions=[
                DimensionResult(
                    dimension=s.dimension,
                    tier=s.tier,
                    value=s.value,
                    threshold=s.threshold,
                    passed=s.passed,
                    reason=s.reason,
                )
                for s in scores[row.id]
            ],
        )
        for row in rows
    ]
    providers = _provider_summaries(store, job_id, candidates)
    return JobResult(
        job_id=job.id,
        name=job.name,
        status=job.status,
        stop_reason=job.stop_reason or "",
        asked=job.deliver,
        delivered=job.delivered,
        candidates_generated=len(candidates),
        candidates_passed=sum(c.passed for c in candidates),
        failed_attempts=sum(p.failed_attempts for p in providers),
        quoted_usd=sum(p.quoted_usd for p in providers),
        spent_usd=sum(p.charged_usd for p in providers),
        providers=providers,
        candidates=candidates,
    )
