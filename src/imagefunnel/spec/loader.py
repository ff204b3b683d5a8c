"""Load a job spec from YAML with errors that name the file, field, line and column.

The YAML is read by :mod:`imagefunnel.strict_yaml` (bounded size, depth and scalars; no anchors,
aliases, tags or duplicate keys), which keeps every key's position; pydantic's error locations are
mapped back onto them: ``job.yaml:4:1: deliver: must be ≥ 1``.
"""

from __future__ import annotations

from pathlib import Path

from imagefunnel.spec.models import JobSpec
from imagefunnel.strict_yaml import MAX_DEPTH, load_yaml, read_yaml_file, validate

__all__ = ["MAX_DEPTH", "MAX_SPEC_BYTES", "load_spec", "parse_spec"]

MAX_SPEC_BYTES = 1_000_000


def parse_spec(text: str | bytes, *, source: str = "<spec>", base_dir: Path | None = None) -> JobSpec:
    """Parse and validate spec YAML. Raises ``SpecError``: ``SOURCE:LINE:COL: field: problem``."""
    doc = load_yaml(text, source=source, max_bytes=MAX_SPEC_BYTES)
    return _resolved(validate(JobSpec, doc, source=source, what="a spec"), base_dir)


def load_spec(path: Path) -> JobSpec:
    """Read and parse a spec file; reference paths are resolved against the file's folder."""
    doc = read_yaml_file(path, what="spec", max_bytes=MAX_SPEC_BYTES)
    return _resolved(validate(JobSpec, doc, source=str(path), what="a spec"), path.parent)


def _resolved(spec: JobSpec, base_dir: Path | None) -> JobSpec:
    if base_dir is None:
        return spec
    refs = [ref if ref.is_absolute() else base_dir / ref for ref in spec.references]
    update: dict[str, object] = {"references": refs}
    if spec.source is not None and not spec.source.is_absolute():
        update["source"] = base_dir / spec.source
    return spec.model_copy(update=update)
