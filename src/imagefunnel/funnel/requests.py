"""What a job's ``n``-th request asks for: one definition for the funnel that sends it and for the
results that record it (the store keeps the request id, and the spec, not each prompt and seed)."""

from __future__ import annotations

from imagefunnel.spec import JobSpec

__all__ = ["prompt_for", "request_number", "seed_for"]


def prompt_for(spec: JobSpec, n: int) -> str:
    """The prompt of a job's ``n``-th request (round robin; none for background removal)."""
    return spec.prompts[n % len(spec.prompts)] if spec.prompts else ""


def seed_for(spec: JobSpec, n: int) -> int:
    """The seed of a job's ``n``-th request: distinct per request, reproducible from the spec."""
    return spec.seed * 1_000_003 + n


def request_number(request_id: str) -> int | None:
    """``n`` of a request id ``<job id prefix>-<n>``; None for ids not made by the funnel."""
    _, _, suffix = request_id.rpartition("-")
    return int(suffix) if suffix.isdigit() else None
