"""Deployed workflows on disk, versioned: ``ROOT/NAME/vNNNN/{workflow.json, manifest.json}``.

Adding the same graph with the same exposed inputs again is a no-op that returns the existing
version; any change makes a new version, and old versions stay runnable by number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.errors import SpecError
from imagefunnel.providers.comfyui_workflow import Workflow, parse_workflow
from imagefunnel.scoring.registry import did_you_mean
from imagefunnel.workflows.manifest import ExposedInput, Manifest

__all__ = ["Deployed", "WorkflowRegistry", "workflow_sha256"]


def workflow_sha256(workflow: Workflow) -> str:
    return hashlib.sha256(workflow.source.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Deployed:
    manifest: Manifest
    workflow: Workflow

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def model(self) -> str:
        """The provider model id the router knows this workflow by."""
        return f"workflow:{self.manifest.name}"


class WorkflowRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in folder.iterdir() if p.is_dir() and p.name[1:].isdigit())

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self._versions(p.name))

    def add(
        self,
        name: str,
        workflow: Workflow,
        inputs: dict[str, ExposedInput],
        *,
        output_node: str | None = None,
    ) -> Deployed:
        sha = workflow_sha256(workflow)
        versions = self._versions(name)
        if versions:
            latest = self.get(name)
            same = latest.manifest.workflow_sha256 == sha and latest.manifest.inputs == inputs
            if same and latest.manifest.output_node == output_node:
                return latest
        version = (versions[-1] if versions else 0) + 1
        manifest = Manifest(
            name=name, version=version, workflow_sha256=sha, inputs=inputs, output_node=output_node
        )
        folder = self.root / name / f"v{version:04d}"
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "workflow.json").write_text(
            json.dumps(workflow.graph, indent=1, sort_keys=True), encoding="utf-8"
        )
        (folder / "manifest.json").write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
        return Deployed(manifest, workflow)

    def get(self, name: str, version: int | None = None) -> Deployed:
        versions = self._versions(name)
        if not versions:
            raise SpecError(f"no deployed workflow {name!r}; {did_you_mean(name, self.names())}")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise SpecError(f"workflow {name!r} has no version {chosen} (versions: {versions})")
        folder = self.root / name / f"v{chosen:04d}"
        manifest = Manifest.model_validate_json((folder / "manifest.json").read_text(encoding="utf-8"))
        workflow = parse_workflow((folder / "workflow.json").read_text(encoding="utf-8"), name=name)
        return Deployed(manifest, workflow)

    def deployed(self) -> list[Deployed]:
        return [self.get(name) for name in self.names()]
