"""Job specs: pydantic models and a YAML loader with precise errors."""

from imagefunnel.spec.loader import load_spec, parse_spec
from imagefunnel.spec.models import ImageSize, JobSpec, ProviderConstraints, Rule, UseCase

__all__ = ["ImageSize", "JobSpec", "ProviderConstraints", "Rule", "UseCase", "load_spec", "parse_spec"]
