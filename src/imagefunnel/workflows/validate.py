"""Check a workflow and its exposed inputs against a server's ``/object_info`` before deploying.

A workflow that names a checkpoint (or UNet, VAE, CLIP, LoRA...) the server does not have would be
accepted by nothing but that server's validation, at the first paid run: it is refused here, naming
the file. Exposed inputs take the server's choices and ranges when the user gave none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagefunnel.errors import SpecError
from imagefunnel.providers.comfyui_workflow import Workflow
from imagefunnel.workflows.manifest import ExposedInput

__all__ = ["MODEL_INPUTS", "check_workflow"]

# Inputs whose combo lists model files: a value missing there is a model the box lacks.
MODEL_INPUTS = frozenset({
    "ckpt_name", "unet_name", "vae_name", "clip_name", "clip_name1", "clip_name2", "clip_name3",
    "lora_name", "control_net_name", "model_name", "style_model_name", "clip_vision_name",
    "upscale_model", "gligen_name", "hypernetwork_name",
})  # fmt: skip
_LOADED_FILES = frozenset({"image"})  # LoadImage's file is uploaded at run time


def _input_spec(info: Mapping[str, Any], key: str) -> list[Any] | None:
    inputs = info.get("input", {})
    for group in ("required", "optional"):
        spec = inputs.get(group, {}).get(key)
        if isinstance(spec, list) and spec:
            return spec
    return None


def _graph_problems(graph: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for node_id, node in sorted(graph.items()):
        class_type = str(node["class_type"])
        info = object_info.get(class_type)
        if info is None:
            problems.append(f"node {node_id}: the server has no node class {class_type}")
            continue
        for key, value in node["inputs"].items():
            spec = _input_spec(info, key)
            if (
                isinstance(value, list)
                or spec is None
                or not isinstance(spec[0], list)
                or key in _LOADED_FILES
            ):
                continue
            if value not in spec[0]:
                what = "model file" if key in MODEL_INPUTS else "value"
                problems.append(
                    f"node {node_id} ({class_type}): the server has no {what} {value!r} for {key}"
                )
    return problems


def check_workflow(
    workflow: Workflow, inputs: Mapping[str, ExposedInput], object_info: Mapping[str, Any]
) -> dict[str, ExposedInput]:
    """The exposed inputs, enriched with the server's choices and ranges; SpecError lists every
    problem (missing node classes, missing model files, inputs that do not exist)."""
    graph = workflow.graph
    problems = _graph_problems(graph, object_info)
    enriched: dict[str, ExposedInput] = {}
    for name, exposed in inputs.items():
        node = graph.get(exposed.node)
        if node is None:
            problems.append(f"input {name}: the workflow has no node {exposed.node}")
            continue
        info = object_info.get(str(node["class_type"]), {})
        spec = _input_spec(info, exposed.input) if info else None
        if info and spec is None:
            problems.append(f"input {name}: {node['class_type']} has no input {exposed.input!r}")
            continue
        enriched[name] = _enrich(exposed, spec)
    if problems:
        raise SpecError(f"workflow {workflow.name} does not fit the server: " + "; ".join(problems))
    return enriched


def _enrich(exposed: ExposedInput, spec: list[Any] | None) -> ExposedInput:
    if spec is None:
        return exposed
    update: dict[str, Any] = {}
    if isinstance(spec[0], list) and exposed.type == "choice" and not exposed.choices:
        update["choices"] = tuple(str(c) for c in spec[0])
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if exposed.type in ("int", "float"):
        if exposed.min is None and isinstance(options.get("min"), int | float):
            update["min"] = float(options["min"])
        if exposed.max is None and isinstance(options.get("max"), int | float):
            update["max"] = float(options["max"])
    return exposed.model_copy(update=update) if update else exposed
