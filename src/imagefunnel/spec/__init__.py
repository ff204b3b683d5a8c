"""Job specs: pydantic models and a YAML loader with precise errors."""

from imagefunnel.spec.loader import load_spec, parse_spec
from imagefunnel.spec.models import (
    CreativeBrief,
    ImageSize,
    JobSpec,
    ProviderConstraints,
    Rule,
    SafeArea,
    UseCase,
)

__all__ = [
    "CreativeBrief",
    "ImageSize",
    "JobSpec",
    "ProviderConstraints",
    "Rule",
    "SafeArea",
    "UseCase",
    "load_spec",
    "parse_spec",
]
