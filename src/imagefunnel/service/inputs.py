"""Parsing what clients send, as hostile input: specs (JSON or YAML) and images.

Every check runs before the step it protects: a spec's size and nesting depth are measured on the
text (YAML's token stream, no recursion) before it is composed; YAML anchors and aliases are refused
outright (they are how a small document expands into a huge one); images go through
:func:`imagefunnel.imaging.decode_image` (magic-byte sniffing, byte and pixel limits before any
pixel is allocated). A spec may name images only as uploads (``upload:<id>``, where the caller
allows it): never a path on the server's host. Every refusal is an :class:`ApiError` naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from imagefunnel.errors import ImageError, ImageTooLarge, SpecError
from imagefunnel.imaging import DecodedImage, decode_image
from imagefunnel.service.errors import ApiError
from imagefunnel.service.references import named_uploads
from imagefunnel.spec import JobSpec, parse_spec

__all__ = [
    "check_depth",
    "decode_upload",
    "parse_json",
    "parse_spec_body",
    "spec_from_data",
    "spec_with_images",
]

_OPEN = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def check_depth(value: object, *, limit: int) -> None:
    """Refuse parsed JSON nested deeper than ``limit`` (iteratively: no recursion to exhaust)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise ApiError(400, "too_deep", f"JSON nests deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "too_deep", f"JSON nests deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    check_depth(value, limit=max_depth)
    return value


def _check_yaml(text: str, *, max_depth: int) -> None:
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                raise ApiError(422, "invalid_spec", "YAML anchors and aliases are not accepted in a spec")
            if isinstance(token, _OPEN):
                depth += 1
                if depth > max_depth:
                    raise ApiError(400, "too_deep", f"YAML nests deeper than {max_depth} levels")
            elif isinstance(token, _CLOSE):
                depth -= 1
    except yaml.YAMLError as exc:
        raise ApiError(422, "invalid_spec", f"not valid YAML: {exc}") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "spec"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {str(first['msg']).removeprefix('Value error, ')}{more}"


def _no_host_files(spec: JobSpec, *, uploads: bool) -> JobSpec:
    # The service never reads files on its own host on a client's say-so: a spec's images
    # (``references``, ``source``) may only name uploads, and only where ``uploads`` is True.
    named_uploads(spec, uploads_allowed=uploads)
    return spec


def spec_from_data(data: object, *, uploads: bool = False) -> JobSpec:
    """A spec from parsed JSON (already depth-checked); ``uploads``: it may name uploaded images
    (``upload:<id>``, see :mod:`imagefunnel.service.references`), else it may name no image."""
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_spec", "a spec must be a JSON object of fields")
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_spec", _first_error(exc)) from None
    return _no_host_files(spec, uploads=uploads)


def parse_spec_body(
    raw: bytes, content_type: str, *, max_bytes: int, max_depth: int, uploads: bool = False
) -> JobSpec:
    """A spec from a request body: JSON (``application/json``) or YAML (anything YAML-ish);
    ``uploads`` as for :func:`spec_from_data`."""
    if len(raw) > max_bytes:
        raise ApiError(413, "spec_too_large", f"spec is larger than {max_bytes} bytes")
    media = content_type.split(";")[0].strip().lower()
    if media in ("application/json", ""):
        return spec_from_data(parse_json(raw, max_depth=max_depth), uploads=uploads)
    if media not in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"):
        raise ApiError(415, "unsupported_media_type", f"send the spec as JSON or YAML, not {media}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "spec YAML must be UTF-8") from None
    _check_yaml(text, max_depth=max_depth)
    try:
        spec = parse_spec(text, source="spec")
    except SpecError as exc:
        raise ApiError(422, "invalid_spec", str(exc)) from None
    return _no_host_files(spec, uploads=uploads)


def _media_of(text: str) -> str:
    return "application/json" if text.lstrip().startswith("{") else "application/yaml"


def spec_with_images(
    text: str, *, references: Sequence[str], source: str | None, max_bytes: int, max_depth: int
) -> JobSpec:
    """A spec from YAML or JSON text, with uploaded images added (``upload:<id>`` names):
    ``references`` after the spec's own, ``source`` where the spec names none."""
    raw = text.encode()
    if not references and source is None:
        return parse_spec_body(raw, _media_of(text), max_bytes=max_bytes, max_depth=max_depth, uploads=True)
    if len(raw) > max_bytes:
        raise ApiError(413, "spec_too_large", f"spec is larger than {max_bytes} bytes")
    if _media_of(text) == "application/json":
        data = parse_json(raw, max_depth=max_depth)
    else:
        _check_yaml(text, max_depth=max_depth)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ApiError(422, "invalid_spec", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_spec", "a spec must be a mapping of fields")
    own = data.get("references") or []
    if not isinstance(own, list):
        raise ApiError(422, "invalid_spec", "references: must be a list")
    data = {**data, "references": [*own, *references]}
    if source is not None:
        if data.get("source") is not None:
            raise ApiError(422, "invalid_spec", "source: the spec names one and one was uploaded; keep one")
        data["source"] = source
    return spec_from_data(data, uploads=True)


def decode_upload(name: str, data: bytes, *, max_bytes: int, max_pixels: int) -> DecodedImage:
    """Decode one uploaded image or refuse it, naming the file (escaped by whoever shows it)."""
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        raise ApiError(413, "image_too_large", f"{name}: {exc}") from None
    except ImageError as exc:
        raise ApiError(422, "invalid_image", f"{name}: {exc}") from None
