"""Validation: plain YAML data against a pydantic model, errors mapped back onto lines."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ValidationError

from imagefunnel.strict_yaml._document import Loc, Position, YamlDocument, YamlInputError

M = TypeVar("M", bound=BaseModel)


def dotted(loc: Sequence[str | int]) -> str:
    """``rules[1].expr`` for the location ``("rules", 1, "expr")``."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _describe(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "greater_than_equal":
        return f"must be ≥ {ctx['ge']}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be ≤ {ctx['le']}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}"
    if kind == "missing":
        return "is required" if msg == "Field required" else msg
    if kind == "extra_forbidden":
        return "is not a known field"
    return msg


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold: ``Annotated`` stripped, unions split, ``None`` dropped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg) if t is not type(None)]
    return [annotation]


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every name a model's fields are written under in YAML → the attribute it fills."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
        choices = info.validation_alias
        if isinstance(choices, str):
            names[choices] = name
        elif isinstance(choices, AliasChoices):
            names.update({choice: name for choice in choices.choices if isinstance(choice, str)})
    return names


def _step(annotation: Any, part: str | int) -> list[Any]:
    """The types found one step down ``annotation`` at ``part`` (a field name, key or index)."""
    found: list[Any] = []
    for kind in _unwrap(annotation):
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(part, str):
            attr = _field_names(kind).get(part)
            if attr is not None:
                found.append(kind.model_fields[attr].annotation)
        elif origin in (dict, Mapping) and len(args) == 2:
            found.append(args[1])
        elif origin in (list, tuple, Sequence) and args and isinstance(part, int):
            found.append(
                args[0] if origin is not tuple or args[-1] is Ellipsis else args[min(part, len(args) - 1)]
            )
    return found


def _models_at(model: type[BaseModel], loc: Loc) -> list[type[BaseModel]]:
    kinds: list[Any] = [model]
    for part in loc:
        kinds = [found for kind in kinds for found in _step(kind, part)]
    return [k for kind in kinds for k in _unwrap(kind) if isinstance(k, type) and issubclass(k, BaseModel)]


def _all_names(model: type[BaseModel]) -> set[str]:
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [model]
    names: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        names.update(_field_names(current))
        for info in current.model_fields.values():
            todo.extend(_models_at_annotation(info.annotation))
    return names


def _models_at_annotation(annotation: Any) -> list[type[BaseModel]]:
    todo, found = [annotation], []
    while todo:
        for kind in _unwrap(todo.pop()):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found.append(kind)
            else:
                todo.extend(typing.get_args(kind))
    return found


def _did_you_mean(model: type[BaseModel], loc: Loc) -> str:
    parents = _models_at(model, loc[:-1])
    names = {n for parent in parents for n in _field_names(parent)} if parents else _all_names(model)
    hint = difflib.get_close_matches(str(loc[-1]), sorted(names), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _position_for(loc: Loc, error_type: str, positions: Mapping[Loc, Position]) -> Position | None:
    # A missing field has no line of its own: point at the mapping that lacks it (none at the top).
    if error_type == "missing":
        loc = loc[:-1]
        if not loc:
            return None
    for end in range(len(loc), 0, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


def _error_line(error: Mapping[str, Any], model: type[BaseModel], doc: YamlDocument) -> tuple[Loc, str]:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    what = _describe(error)
    if "[key]" in error["loc"]:
        what = f"is not an accepted key: {what}"
    if error["type"] == "extra_forbidden":
        what += _did_you_mean(model, loc)
    return loc, what


def _under(loc: Sequence[str | int], parent: Sequence[str | int]) -> bool:
    return len(loc) > len(parent) and tuple(loc[: len(parent)]) == tuple(parent)


def _from_validation(
    exc: ValidationError, model: type[BaseModel], doc: YamlDocument, source: str
) -> YamlInputError:
    every = exc.errors()
    # A list too short "after validation" only repeats that one of its items failed.
    errors = [
        error
        for error in every
        if not (error["type"] == "too_short" and any(_under(other["loc"], error["loc"]) for other in every))
    ] or every
    # A typo is the cause of the "required" error it leaves behind, so unknown fields come first.
    errors.sort(key=lambda error: error["type"] != "extra_forbidden")
    first = errors[0]
    loc, what = _error_line(first, model, doc)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    field = dotted(loc) or "(document)"
    return YamlInputError(
        f"{field}: {what}{more}",
        source=source,
        position=_position_for(loc, first["type"], doc.positions),
        field=field,
    )


_MISSING = object()


def _value_at(value: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(value, BaseModel) and isinstance(part, str):
            attr = _field_names(type(value)).get(part)
            value = getattr(value, attr, _MISSING) if attr is not None else _MISSING
        elif isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list | tuple) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return _MISSING
    return value


def _check_lax_numbers(validated: BaseModel, doc: YamlDocument, source: str) -> None:
    """Refuse booleans and text that validation turned into numbers (pydantic's lax mode does)."""
    wrong: list[tuple[Position, Loc, str]] = []
    for paths, problem in (
        (doc.booleans, "must be a number, not true/false"),
        (doc.texts, "must be a number, not quoted text"),
    ):
        for loc in paths:
            value = _value_at(validated, loc)
            if isinstance(value, int | float) and not isinstance(value, bool):
                wrong.append((doc.positions.get(loc, (0, 0)), loc, problem))
    if wrong:
        wrong.sort(key=lambda item: item[0])
        position, loc, problem = wrong[0]
        more = f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""
        field = dotted(loc)
        raise YamlInputError(f"{field}: {problem}{more}", source=source, position=position, field=field)


def validate(model: type[M], doc: YamlDocument, *, source: str, what: str) -> M:
    """Validate ``doc`` against ``model``; every error names the field, line and column."""
    if not isinstance(doc.data, dict):
        raise YamlInputError(f"{what} must be a YAML mapping of fields", source=source)
    try:
        validated = model.model_validate(doc.data)
    except ValidationError as exc:
        raise _from_validation(exc, model, doc, source) from exc
    _check_lax_numbers(validated, doc, source)
    return validated
