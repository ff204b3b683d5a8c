"""``POST /prompt`` validation, answering the same error shapes a real ComfyUI server does.

The walk mirrors ComfyUI's ``execution.validate_prompt``: output nodes are validated depth-first along
their links; a problem in an upstream node marks the nodes downstream invalid without errors of their
own; an exception while following a link (a link to a node that does not exist) is reported on the
node that holds the link as ``exception_during_inner_validation``. Literal inputs are converted in
place (``"512"`` becomes ``512``), as the real server does before queueing the prompt.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagefunnel.market.comfyui_catalog import NodeSpec

__all__ = ["Validation", "validate_prompt"]

# Combos longer than this are summarised, so a box with many files never answers a huge error.
_MAX_LISTED_CHOICES = 20
_WALK_ERRORS = (LookupError, TypeError, AttributeError, ValueError)
_Checked = tuple[bool, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Validation:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


def _invalid(kind: str, message: str, details: str = "") -> Validation:
    return Validation(False, {"type": kind, "message": message, "details": details, "extra_info": {}}, [])


def validate_prompt(
    prompt: dict[str, Any], catalog: Mapping[str, NodeSpec], *, has_input_file: Callable[[str], bool]
) -> Validation:
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return _invalid("invalid_prompt", message, f"Node ID '#{node_id}'")
        spec = catalog.get(node["class_type"]) if isinstance(node["class_type"], str) else None
        if spec is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return _invalid("invalid_prompt", message, f"Node ID '#{node_id}'")
        if spec.output_node:
            outputs.append(node_id)
    if not outputs:
        return _invalid("prompt_no_outputs", "Prompt has no outputs")

    walker = _Walker(prompt, catalog, has_input_file)
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            valid, reasons = walker.check(output)
        except _WALK_ERRORS as exc:
            valid, reasons = (
                False,
                [_exception_reason("exception_during_validation", "Exception when validating node", exc)],
            )
            walker.validated[output] = (False, reasons)
        if valid:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_valid, node_reasons) in walker.validated.items():
            # Downstream nodes of a broken one are invalid without reasons: not reported.
            if node_valid or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errors in failed for e in errors)
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": details,
            "extra_info": {},
        }
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)


def _exception_reason(kind: str, message: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": str(exc),
        "extra_info": {
            **extra,
            "exception_message": str(exc),
            "exception_type": type(exc).__qualname__,
            "traceback": traceback.format_tb(exc.__traceback__),
        },
    }


class _Walker:
    def __init__(
        self, prompt: dict[str, Any], catalog: Mapping[str, NodeSpec], has_input_file: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.catalog = catalog
        self.has_input_file = has_input_file
        self.validated: dict[str, _Checked] = {}

    def check(self, node_id: str) -> _Checked:
        if node_id in self.validated:
            return self.validated[node_id]
        inputs = self.prompt[node_id]["inputs"]  # KeyError for a missing node: the caller reports it
        spec = self.catalog[self.prompt[node_id]["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        for name, info in spec.required.items():
            if name not in inputs:
                errors.append(
                    _reason("required_input_missing", "Required input is missing", name, input_name=name)
                )
                continue
            value = inputs[name]
            if isinstance(value, list):
                valid = self._check_link(name, info, value, errors) and valid
            else:
                self._check_literal(spec, inputs, name, info, errors)
        if spec.custom_validation and "image" in inputs and not isinstance(inputs["image"], list):
            image = str(inputs["image"])
            if not self.has_input_file(image):
                details = f"image - Invalid image file: {image}"
                errors.append(
                    _reason(
                        "custom_validation_failed", "Custom validation failed for node", details,
                        input_name="image", input_config=spec.required["image"], received_value=image,
                    )
                )  # fmt: skip
        result: _Checked = (not errors and valid, errors)
        self.validated[node_id] = result
        return result

    def _check_link(self, name: str, info: list[Any], link: list[Any], errors: list[dict[str, Any]]) -> bool:
        if len(link) != 2:
            message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            errors.append(
                _reason(
                    "bad_linked_input", message, name, input_name=name, input_config=info, received_value=link
                )
            )
            return True
        source_id, slot = link
        source = self.catalog[self.prompt[source_id]["class_type"]]  # KeyError propagates, as upstream
        received = source.outputs[slot]
        if received != info[0]:
            errors.append(
                _reason(
                    "return_type_mismatch", "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({info[0]})",
                    input_name=name, input_config=info, received_type=received, linked_node=link,
                )
            )  # fmt: skip
            return True
        try:
            upstream_valid, _ = self.check(source_id)
        except _WALK_ERRORS as exc:
            reason = _exception_reason(
                "exception_during_inner_validation", "Exception when validating inner node", exc,
                input_name=name, input_config=info, linked_node=link,
            )  # fmt: skip
            self.validated[source_id] = (False, [reason])
            return False
        return upstream_valid

    def _check_literal(
        self, spec: NodeSpec, inputs: dict[str, Any], name: str, info: list[Any], errors: list[dict[str, Any]]
    ) -> None:
        kind = info[0]
        value = inputs[name]
        converters: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str}
        if isinstance(kind, str) and kind in converters:
            try:
                value = converters[kind](value)
            except (ValueError, TypeError, OverflowError) as exc:
                errors.append(
                    _reason(
                        "invalid_input_type", f"Failed to convert an input value to a {kind} value",
                        f"{name}, {value}, {exc}", input_name=name, input_config=info,
                        received_value=value, exception_message=str(exc),
                    )
                )  # fmt: skip
                return
            inputs[name] = value
        limits = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
        common = {"input_name": name, "input_config": info, "received_value": value}
        if "min" in limits and value < limits["min"]:
            message = f"Value {value} smaller than min of {limits['min']}"
            errors.append(_reason("value_smaller_than_min", message, name, **common))
        elif "max" in limits and value > limits["max"]:
            message = f"Value {value} bigger than max of {limits['max']}"
            errors.append(_reason("value_bigger_than_max", message, name, **common))
        elif isinstance(kind, list) and not spec.custom_validation and value not in kind:
            listed = str(kind) if len(kind) <= _MAX_LISTED_CHOICES else f"(list of length {len(kind)})"
            config = info if len(kind) <= _MAX_LISTED_CHOICES else None
            errors.append(
                _reason(
                    "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                    input_name=name, input_config=config, received_value=value,
                )
            )  # fmt: skip


def _reason(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}
