"""ComfyUI API-format workflows: loading them, and injecting a request's parameters by node *role*.

Node ids differ between every exported workflow, so nothing here looks a node up by id. Roles are
found by following links from the sampler, the way the graph itself defines them:

* the sampler (``KSampler``, ``KSamplerAdvanced``, ``SamplerCustom``) takes seed, steps, cfg, ...;
* its ``positive`` / ``negative`` inputs lead (through any conditioning nodes) to the text encoders;
* its ``latent_image`` leads to ``EmptyLatentImage`` (width/height) or, for image-to-image, through
  ``VAEEncode`` to an ``ImageScale`` (width/height) and the ``LoadImage`` that takes the reference;
* model-free graphs (no sampler) take width/height on ``EmptyImage``.

A parameter that no node can take is an error naming what is missing, never silently dropped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from imagefunnel.errors import SpecError

__all__ = ["Injection", "Workflow", "builtin_workflows", "inject", "load_workflow", "parse_workflow"]

_MAX_WORKFLOW_BYTES = 2_000_000
# Sampler class → the input that takes the seed.
_SAMPLERS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed", "SamplerCustom": "noise_seed"}
_TEXT_INPUTS = ("text", "text_g", "text_l")
_EMPTY_LATENTS = frozenset({"EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo"})
# Upstream hops followed from a sampler input before giving up (graphs are shallow).
_MAX_HOPS = 8


@dataclass(frozen=True, slots=True)
class Workflow:
    """An API-format graph ``{node_id: {"class_type", "inputs"}}``, kept as canonical JSON so that
    a ``Workflow`` is immutable and every injection starts from a fresh copy."""

    name: str
    source: str

    @property
    def graph(self) -> dict[str, Any]:
        graph: dict[str, Any] = json.loads(self.source)
        return graph

    def classes(self) -> frozenset[str]:
        return frozenset(str(node["class_type"]) for node in self.graph.values())


@dataclass(frozen=True, slots=True)
class Injection:
    """What to set; ``None`` leaves the workflow's own value."""

    prompt: str | None = None
    negative: str | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    checkpoint: str | None = None
    image: str | None = None  # an uploaded file's name, as LoadImage takes it
    filename_prefix: str | None = None


def builtin_workflows() -> list[str]:
    folder = resources.files("imagefunnel.providers") / "workflows"
    return sorted(item.name.removesuffix(".json") for item in folder.iterdir() if item.name.endswith(".json"))


def load_workflow(name_or_path: str | Path) -> Workflow:
    """A shipped workflow by name (``"txt2img"``) or an API-format JSON file by path."""
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix == ".json" or len(path.parts) > 1:
        if not path.is_file():
            raise SpecError(f"workflow file not found: {path}")
        if path.stat().st_size > _MAX_WORKFLOW_BYTES:
            raise SpecError(f"workflow file too large: {path}")
        return parse_workflow(path.read_text(encoding="utf-8"), name=path.stem)
    known = builtin_workflows()
    if str(name_or_path) not in known:
        raise SpecError(f"unknown workflow {name_or_path!r}; built-in: {', '.join(known)}")
    resource = resources.files("imagefunnel.providers") / "workflows" / f"{name_or_path}.json"
    return parse_workflow(resource.read_text(encoding="utf-8"), name=str(name_or_path))


def parse_workflow(text: str, *, name: str) -> Workflow:
    try:
        graph = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"workflow {name}: not valid JSON: {exc}") from exc
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise SpecError(f"workflow {name}: this is the UI format; export it with 'Export (API)'")
    if not isinstance(graph, dict) or not graph:
        raise SpecError(f"workflow {name}: expected a non-empty object of nodes")
    for node_id, node in graph.items():
        ok = isinstance(node, dict) and isinstance(node.get("class_type"), str)
        if not ok or not isinstance(node.get("inputs"), dict):
            raise SpecError(f"workflow {name}: node {node_id} needs 'class_type' and 'inputs'")
    return Workflow(name=name, source=json.dumps(graph, sort_keys=True))


def inject(workflow: Workflow, params: Injection) -> dict[str, Any]:
    """A new graph with ``params`` set on the nodes that play each role."""
    graph = copy.deepcopy(workflow.graph)
    roles = _Roles(graph, workflow.name)
    for sampler in roles.samplers():
        inputs = graph[sampler]["inputs"]
        _set(inputs, _SAMPLERS[graph[sampler]["class_type"]], params.seed)
        for key in ("steps", "cfg", "sampler_name", "scheduler", "denoise"):
            _set(inputs, key, getattr(params, key))
    _set_all(roles.texts("positive"), params.prompt, "prompt", roles)
    _set_all(roles.texts("negative"), params.negative, "negative prompt", roles)
    if params.width is not None or params.height is not None:
        sized = roles.sized_nodes()
        if not sized:
            raise SpecError(f"workflow {workflow.name}: no node takes width/height (EmptyLatentImage, ...)")
        for node in sized:
            _set(graph[node]["inputs"], "width", params.width)
            _set(graph[node]["inputs"], "height", params.height)
            if "batch_size" in graph[node]["inputs"]:
                graph[node]["inputs"]["batch_size"] = 1
    # Model-free graphs (EmptyImage ...) have no seed to take: their output is deterministic anyway.
    if params.seed is not None and not roles.samplers() and not roles.of_class("EmptyImage"):
        raise SpecError(f"workflow {workflow.name}: no sampler node ({', '.join(_SAMPLERS)}) takes the seed")
    if params.image is not None:
        loaders = roles.of_class("LoadImage")
        if not loaders:
            raise SpecError(f"workflow {workflow.name}: no LoadImage node takes the reference image")
        for node in loaders:
            graph[node]["inputs"]["image"] = params.image
    for node in roles.of_class("CheckpointLoaderSimple"):
        _set(graph[node]["inputs"], "ckpt_name", params.checkpoint)
    for node in roles.of_class("SaveImage"):
        _set(graph[node]["inputs"], "filename_prefix", params.filename_prefix)
    return graph


def _set(inputs: dict[str, Any], key: str, value: object) -> None:
    # Never overwrite a link with a literal: a linked seed or size is the workflow author's choice.
    if value is not None and key in inputs and not isinstance(inputs[key], list):
        inputs[key] = value


def _set_all(targets: list[tuple[str, str]], value: str | None, what: str, roles: _Roles) -> None:
    if value is None:
        return
    if not roles.samplers():
        raise SpecError(f"workflow {roles.name}: no sampler node ({', '.join(_SAMPLERS)}) takes the {what}")
    if not targets:
        raise SpecError(f"workflow {roles.name}: no text encoder feeds the sampler's {what}")
    for node, key in targets:
        roles.graph[node]["inputs"][key] = value


class _Roles:
    def __init__(self, graph: dict[str, Any], name: str) -> None:
        self.graph = graph
        self.name = name

    def of_class(self, class_type: str) -> list[str]:
        return [node for node, spec in self.graph.items() if spec["class_type"] == class_type]

    def samplers(self) -> list[str]:
        return [node for node, spec in self.graph.items() if spec["class_type"] in _SAMPLERS]

    def _upstream(self, node: str, key: str) -> Iterator[str]:
        """Nodes reachable upstream from ``node``'s input ``key``, nearest first."""
        link = self.graph[node]["inputs"].get(key)
        frontier = [link[0]] if isinstance(link, list) and link and link[0] in self.graph else []
        seen: set[str] = set()
        for _ in range(_MAX_HOPS):
            following: list[str] = []
            for current in frontier:
                if current in seen:
                    continue
                seen.add(current)
                yield current
                for value in self.graph[current]["inputs"].values():
                    if isinstance(value, list) and value and value[0] in self.graph:
                        following.append(value[0])
            frontier = following

    def texts(self, role: str) -> list[tuple[str, str]]:
        """(node, input) pairs holding the prompt text on the sampler's ``role`` path."""
        found: list[tuple[str, str]] = []
        for sampler in self.samplers():
            for node in self._upstream(sampler, role):
                keys = [k for k in _TEXT_INPUTS if isinstance(self.graph[node]["inputs"].get(k), str)]
                found.extend((node, key) for key in keys)
                if keys:
                    break  # the nearest encoder on this path; deeper ones feed something else
        return found

    def sized_nodes(self) -> list[str]:
        sized: list[str] = []
        for sampler in self.samplers():
            for node in self._upstream(sampler, "latent_image"):
                kind = self.graph[node]["class_type"]
                if kind in _EMPTY_LATENTS or kind == "ImageScale":
                    sized.append(node)
                    break
        if not self.samplers():
            sized = self.of_class("EmptyImage") or self.of_class("ImageScale")
        return sized
