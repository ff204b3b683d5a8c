"""Load a job spec from YAML with errors that name the field and the line.

YAML is composed into nodes first (safe loader, no tags beyond the core schema), so every value keeps
its position; pydantic's error locations are then mapped back onto lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imagefunnel.errors import SpecError
from imagefunnel.spec.models import JobSpec

MAX_SPEC_BYTES = 1_000_000
MAX_DEPTH = 20

Loc = tuple[str | int, ...]


def _line_index(node: yaml.Node, path: Loc, out: dict[Loc, int], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise SpecError(f"spec nests deeper than {MAX_DEPTH} levels", line=node.start_mark.line + 1)
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), out, depth + 1)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out, depth + 1)


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _describe(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "greater_than_equal":
        return f"must be ≥ {ctx['ge']}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be ≤ {ctx['le']}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    return msg.removeprefix("Value error, ")


def _dotted(loc: Sequence[str | int]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "spec"


def parse_spec(text: str, *, source: str = "<spec>", base_dir: Path | None = None) -> JobSpec:
    """Parse and validate spec YAML text. Raises ``SpecError`` naming field and line."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: spec is larger than {MAX_SPEC_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError(f"{source}: not valid YAML: {exc}", line=line) from exc
    if node is None or not isinstance(data, dict):
        raise SpecError(f"{source}: a spec must be a YAML mapping of fields")
    lines: dict[Loc, int] = {}
    _line_index(node, (), lines)
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc: Loc = tuple(first["loc"])
        # A missing top-level field has no line of its own; the file's first line would mislead.
        line = None if first["type"] == "missing" and len(loc) == 1 else _line_for(loc, lines)
        where = f" (line {line})" if line is not None else ""
        field = _dotted(loc)
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(f"{field}: {_describe(first)}{where}{more}", field=field, line=line) from exc
    if base_dir is not None:
        refs = [ref if ref.is_absolute() else base_dir / ref for ref in spec.references]
        update: dict[str, object] = {"references": refs}
        if spec.source is not None and not spec.source.is_absolute():
            update["source"] = base_dir / spec.source
        spec = spec.model_copy(update=update)
    return spec


def load_spec(path: Path) -> JobSpec:
    """Read and parse a spec file; reference paths are resolved against the file's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec: {exc}") from exc
    return parse_spec(text, source=str(path), base_dir=path.parent)
