"""Which inputs of an API-format workflow a user may want to set, found from the graph itself.

Every literal (non-link) input of every node is a candidate; each gets a *kind* from what it is:

* ``prompt`` / ``negative_prompt``: the text of an encoder reached from a sampler's or guider's
  ``positive`` / ``negative`` / ``conditioning`` input (KSampler, SamplerCustom, FLUX-style
  ``SamplerCustomAdvanced`` → ``BasicGuider``/``CFGGuider`` → ``FluxGuidance`` → encoder);
* ``seed``: ``seed`` / ``noise_seed`` (KSampler, ``RandomNoise``...);
* ``width`` / ``height``: sizes of latents, empty images and scalers;
* ``image``: a ``LoadImage``-style input (the file to upload);
* ``choice``, ``int``, ``float``, ``bool``, ``string``: any other widget, typed by ``/object_info``
  when given (combos become choices, with the server's ranges), else by its current value.

Role inputs (prompts, seed, size, images) are *exposed* by default; in a graph without a prompt or
seed (a model-free upscale or blur), every widget is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from imagefunnel.providers.comfyui_workflow import Workflow

__all__ = ["DetectedInput", "Kind", "detect_inputs"]

Kind = Literal[
    "prompt",
    "negative_prompt",
    "seed",
    "width",
    "height",
    "image",
    "choice",
    "int",
    "float",
    "bool",
    "string",
]
ROLE_KINDS = frozenset({"prompt", "negative_prompt", "seed", "width", "height", "image"})
_TEXT_INPUTS = frozenset({"text", "text_g", "text_l", "t5xxl", "clip_l", "prompt"})
_SEEDS = frozenset({"seed", "noise_seed"})
_IMAGE_LOADERS = frozenset({"LoadImage", "LoadImageMask", "LoadImageOutput"})
# Never worth exposing: where outputs are written, how many to batch.
_PLUMBING = frozenset({"filename_prefix", "batch_size"})
_MAX_HOPS = 8


@dataclass(frozen=True, slots=True)
class DetectedInput:
    """One settable input: where it is, what it is, and a suggested public name."""

    name: str
    node: str
    input: str
    class_type: str
    kind: Kind
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exposed: bool = False


def _links_into(graph: Mapping[str, Any], node: str, keys: frozenset[str]) -> Iterator[str]:
    for key, value in graph[node]["inputs"].items():
        if key in keys and isinstance(value, list) and value and str(value[0]) in graph:
            yield str(value[0])


def _upstream(graph: Mapping[str, Any], start: str) -> Iterator[str]:
    frontier, seen = [start], set()
    for _ in range(_MAX_HOPS):
        following = []
        for node in frontier:
            if node in seen:
                continue
            seen.add(node)
            yield node
            following += [
                str(v[0])
                for v in graph[node]["inputs"].values()
                if isinstance(v, list) and v and str(v[0]) in graph
            ]
        frontier = following


def _text_roles(graph: Mapping[str, Any]) -> dict[tuple[str, str], Kind]:
    """(node, input) of prompt texts, positive or negative, by following the conditioning links."""
    roles: dict[tuple[str, str], Kind] = {}
    for role, keys in (
        ("negative_prompt", frozenset({"negative"})),
        ("prompt", frozenset({"positive", "conditioning"})),
    ):
        for node in graph:
            for start in _links_into(graph, node, keys):
                for upstream in _upstream(graph, start):
                    texts = [
                        k
                        for k, v in graph[upstream]["inputs"].items()
                        if k in _TEXT_INPUTS and isinstance(v, str)
                    ]
                    if texts:
                        for key in texts:
                            roles.setdefault((upstream, key), role)  # type: ignore[arg-type]
                        break
    return roles


def _spec(object_info: Mapping[str, Any] | None, class_type: str, key: str) -> list[Any] | None:
    if object_info is None or class_type not in object_info:
        return None
    inputs = object_info[class_type].get("input", {})
    for group in ("required", "optional"):
        found = inputs.get(group, {}).get(key)
        if isinstance(found, list) and found:
            return found
    return None


def _kind_of(value: Any, spec: list[Any] | None) -> tuple[Kind, tuple[str, ...], float | None, float | None]:
    if spec is not None:
        kind_or_choices = spec[0]
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        lo, hi = options.get("min"), options.get("max")
        if isinstance(kind_or_choices, list):
            return "choice", tuple(str(c) for c in kind_or_choices), None, None
        typed = {"INT": "int", "FLOAT": "float", "BOOLEAN": "bool", "STRING": "string"}.get(
            str(kind_or_choices)
        )
        if typed is not None:
            return typed, (), lo, hi  # type: ignore[return-value]
    if isinstance(value, bool):
        return "bool", (), None, None
    if isinstance(value, int):
        return "int", (), None, None
    if isinstance(value, float):
        return "float", (), None, None
    return "string", (), None, None


def _role(
    graph: Mapping[str, Any], node: str, key: str, texts: Mapping[tuple[str, str], Kind]
) -> Kind | None:
    class_type = str(graph[node]["class_type"])
    if (node, key) in texts:
        return texts[(node, key)]
    if key in _SEEDS:
        return "seed"
    if key in ("width", "height"):
        return key  # type: ignore[return-value]
    if key == "image" and class_type in _IMAGE_LOADERS:
        return "image"
    return None


def _snake(text: str) -> str:
    return (
        re.sub(r"[^a-z0-9]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text).lower()).strip("_") or "input"
    )


def detect_inputs(workflow: Workflow, *, object_info: Mapping[str, Any] | None = None) -> list[DetectedInput]:
    """Every literal input of ``workflow``, roles first, with unique suggested names."""
    graph = workflow.graph
    texts = _text_roles(graph)
    found: list[DetectedInput] = []
    for node in sorted(graph, key=lambda n: (len(n), n)):
        class_type = str(graph[node]["class_type"])
        for key, value in graph[node]["inputs"].items():
            if isinstance(value, list) or key in _PLUMBING:
                continue  # a link, or where the outputs go
            role = _role(graph, node, key, texts)
            kind, choices, lo, hi = _kind_of(value, _spec(object_info, class_type, key))
            found.append(
                DetectedInput(
                    name="",
                    node=node,
                    input=key,
                    class_type=class_type,
                    kind=role or kind,
                    default=value,
                    choices=choices,
                    minimum=lo,
                    maximum=hi,
                )
            )
    # A generative graph exposes its roles; a model-free one (no prompt, no seed) every widget.
    has_roles = any(item.kind in {"prompt", "negative_prompt", "seed"} for item in found)
    return _named(found, has_roles=has_roles)


def _named(found: list[DetectedInput], *, has_roles: bool) -> list[DetectedInput]:
    taken: set[str] = set()
    named: list[DetectedInput] = []
    for item in sorted(found, key=lambda i: (i.kind not in ROLE_KINDS, len(i.node), i.node, i.input)):
        base = item.kind if item.kind in ROLE_KINDS else _snake(f"{item.class_type}_{item.input}")
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        exposed = item.kind in ROLE_KINDS if has_roles else True
        named.append(DetectedInput(**{**_fields(item), "name": name, "exposed": exposed}))
    return named


def _fields(item: DetectedInput) -> dict[str, Any]:
    return {slot: getattr(item, slot) for slot in DetectedInput.__slots__}
