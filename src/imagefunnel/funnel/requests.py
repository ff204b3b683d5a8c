"""What a job's ``n``-th request asks for: one definition for the funnel that sends it, the quote
that prices its first one, and the results that record it (the store keeps the request id, and the
spec, not each prompt and seed)."""

from __future__ import annotations

from imagefunnel.scoring.jobcontext import read_reference, read_source
from imagefunnel.spec import JobSpec

__all__ = ["prompt_for", "reference_images", "request_number", "seed_for"]


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


def reference_images(spec: JobSpec) -> tuple[bytes, ...]:
    """The images every request of the job carries: its input image (``source``) and reference
    photos, read from disk (once per job: callers keep the bytes). Image-taking models need them
    with every request, and the router then only picks providers that can take them. The source
    comes first: it is what a background remover cuts out. An unreadable file raises ``SpecError``
    naming it and its field, before anything is bought."""
    source = read_source(spec.source)
    photos = tuple(read_reference(path, index) for index, path in enumerate(spec.references))
    return ((source,) if source is not None else ()) + photos
