"""The scoring context a job's spec implies: its reference photos, input image and brief, read once."""

from __future__ import annotations

from pathlib import Path

from imagefunnel.errors import ImageError, SpecError
from imagefunnel.imaging import DecodedImage, decode_image, read_image_file
from imagefunnel.scoring.identity import load_references, read_reference
from imagefunnel.scoring.registry import ScoringContext
from imagefunnel.spec import CreativeBrief, JobSpec, UseCase

__all__ = ["TEXT_DIMENSIONS", "context_from", "job_context", "read_reference", "read_source"]

# The visible-text dimensions a brief that asks for text (a product label, a headline) waives.
TEXT_DIMENSIONS = frozenset({"text_area", "text_chars"})


def read_source(path: Path | None) -> bytes | None:
    """The job's input image bytes; SpecError names the file when it cannot be read (or is a pipe,
    a device or too large: those are refused before a byte is read)."""
    if path is None:
        return None
    try:
        return read_image_file(path)
    except ImageError as exc:
        raise SpecError(f"source image {path}: {exc}", field="source") from exc


def context_from(
    *, references: tuple[DecodedImage, ...], source: bytes | None, brief: CreativeBrief, use_case: str
) -> ScoringContext:
    """A context from already-read parts (a worker process gets bytes, not paths)."""
    decoded = None
    if source is not None:
        try:
            decoded = decode_image(source)
        except ImageError as exc:
            raise SpecError(f"source image: {exc}", field="source") from exc
    waived = TEXT_DIMENSIONS if brief.allow_text else frozenset()
    if use_case == UseCase.BACKGROUND_REMOVAL:
        # A cutout keeps what the customer's photo shows: its text or skin are not the remover's doing.
        waived = TEXT_DIMENSIONS | {"nsfw"}
    return ScoringContext(references=references, source=decoded, brief=brief, waived=waived)


def job_context(spec: JobSpec) -> ScoringContext:
    """What every candidate of ``spec`` is judged against."""
    return context_from(
        references=load_references(spec.references),
        source=read_source(spec.source),
        brief=spec.brief,
        use_case=spec.use_case,
    )
