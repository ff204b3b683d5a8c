"""Deploying any API-format ComfyUI workflow: detect its inputs, type the exposed ones, validate it
against a server's ``/object_info``, version it, and run it on a pool of ComfyUI servers from the
CLI, an HTTP endpoint, or the funnel (as a provider model ``workflow:NAME``)."""

from imagefunnel.workflows.detect import DetectedInput, detect_inputs
from imagefunnel.workflows.manifest import ExposedInput, Manifest, bind_values
from imagefunnel.workflows.registry import Deployed, WorkflowRegistry

__all__ = [
    "Deployed",
    "DetectedInput",
    "ExposedInput",
    "Manifest",
    "WorkflowRegistry",
    "bind_values",
    "detect_inputs",
]
