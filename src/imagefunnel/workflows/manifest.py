"""A deployed workflow's manifest: its exposed inputs, named and typed by the user in a small YAML.

    inputs:
      prompt: {node: "6", input: text, type: string}
      seed:   {node: "3", input: seed, type: int, min: 0}
      photo:  {node: "10", input: image, type: image}
      steps:  {node: "3", input: steps, type: int, default: 20, min: 1, max: 60}

Values given at run time (``--set key=value`` strings, JSON) are coerced to the declared type and
checked against its choices and range; an unknown key is an error with a did-you-mean, never ignored.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imagefunnel.errors import SpecError
from imagefunnel.scoring.registry import did_you_mean
from imagefunnel.workflows.detect import DetectedInput

__all__ = [
    "ExposedInput",
    "InputType",
    "Manifest",
    "apply_values",
    "bind_values",
    "draft_inputs",
    "parse_inputs",
]

InputType = Literal["string", "int", "float", "bool", "choice", "image"]
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_TYPE_OF_KIND: Mapping[str, InputType] = {
    "prompt": "string", "negative_prompt": "string", "seed": "int", "width": "int", "height": "int",
    "image": "image", "choice": "choice", "int": "int", "float": "float", "bool": "bool", "string": "string",
}  # fmt: skip
_MAX_INPUTS_BYTES = 200_000


class ExposedInput(BaseModel):
    """One input the deployed workflow takes: which node input it sets, its type and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: Annotated[str, Field(min_length=1, max_length=64)]
    input: Annotated[str, Field(min_length=1, max_length=128)]
    type: InputType
    default: Any = None
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ExposedInput:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice input needs its choices")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Manifest(BaseModel):
    """What is stored with each version of a deployed workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    version: int = Field(ge=1)
    workflow_sha256: str
    inputs: dict[Annotated[str, Field(pattern=_NAME)], ExposedInput]
    output_node: str | None = None  # the node whose images are the result (None: every image)


def draft_inputs(detected: list[DetectedInput]) -> dict[str, ExposedInput]:
    """The exposed inputs a user starts from (the detected ones marked ``exposed``)."""
    return {
        item.name: ExposedInput(
            node=item.node,
            input=item.input,
            type=_TYPE_OF_KIND[item.kind],
            default=item.default,
            choices=item.choices,
            min=item.minimum,
            max=item.maximum,
            description=f"{item.class_type}.{item.input} ({item.kind})",
        )
        for item in detected
        if item.exposed
    }


def parse_inputs(text: str, *, source: str) -> dict[str, ExposedInput]:
    """The ``inputs:`` mapping of a user's YAML; SpecError names the offending key."""
    if len(text.encode()) > _MAX_INPUTS_BYTES:
        raise SpecError(f"{source}: larger than {_MAX_INPUTS_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from exc
    raw = data.get("inputs") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{source}: expected a mapping 'inputs:' of name → {{node, input, type}}")
    out: dict[str, ExposedInput] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not re.match(_NAME, name):
            raise SpecError(f"{source}: input name {name!r} must be lower_snake_case", field=f"inputs.{name}")
        try:
            out[name] = ExposedInput.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(
                f"{source}: inputs.{name}.{where}: {first['msg']}", field=f"inputs.{name}"
            ) from exc
    return out


def _coerce(name: str, spec: ExposedInput, value: Any) -> Any:
    number: float
    try:
        if spec.type == "int":
            number = int(value) if not isinstance(value, str) else int(value.strip())
        elif spec.type == "float":
            number = float(value)
        elif spec.type == "bool":
            if isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"true", "1", "yes"}
            return bool(value)
        else:
            text = value if isinstance(value, str | bytes) else str(value)
            if spec.type == "choice" and text not in spec.choices:
                raise SpecError(f"{name}: {text!r} is not one of {', '.join(spec.choices[:12])}", field=name)
            return text
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{name}: expected {spec.type}, got {value!r}", field=name) from exc
    if isinstance(number, bool):
        raise SpecError(f"{name}: expected {spec.type}, got {value!r}", field=name)
    if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
        raise SpecError(f"{name}: {number} is outside [{spec.min}, {spec.max}]", field=name)
    return number


def bind_values(manifest: Manifest, given: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for every exposed input: given ones coerced and checked, the rest defaulted."""
    unknown = [key for key in given if key not in manifest.inputs]
    if unknown:
        hint = did_you_mean(unknown[0], manifest.inputs)
        raise SpecError(f"workflow {manifest.name} has no input {unknown[0]!r}; {hint}", field=unknown[0])
    values: dict[str, Any] = {}
    for name, spec in manifest.inputs.items():
        if name in given:
            values[name] = _coerce(name, spec, given[name])
        elif spec.type == "image" and spec.default in (None, ""):
            raise SpecError(f"workflow {manifest.name}: input {name!r} (an image) is required", field=name)
        elif spec.default is not None:
            values[name] = spec.default
    return values


def apply_values(
    graph: Mapping[str, Any], manifest: Manifest, values: Mapping[str, Any], uploaded: Mapping[str, str]
) -> dict[str, Any]:
    """A new graph with each value set on its node input (images as their uploaded names)."""
    out = copy.deepcopy(dict(graph))
    for name, spec in manifest.inputs.items():
        if name in uploaded:
            out[spec.node]["inputs"][spec.input] = uploaded[name]
        elif name in values and spec.type != "image":
            out[spec.node]["inputs"][spec.input] = values[name]
    return out
