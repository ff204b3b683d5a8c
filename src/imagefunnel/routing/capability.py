"""The capability filter: which providers may serve a request at all, and why not the others."""

from __future__ import annotations

from dataclasses import dataclass

from imagefunnel.providers.base import Capabilities, GenerationRequest
from imagefunnel.routing.pricebook import ProviderTraits

__all__ = ["Requirements", "exclusion"]


@dataclass(frozen=True, slots=True)
class Requirements:
    """A job's hard constraints on where its requests may go."""

    max_latency_s: float | None = None  # expected latency (cold start included) must not exceed it
    regions: frozenset[str] | None = None  # None: anywhere
    no_data_retention: bool = False
    no_training: bool = False


def exclusion(
    caps: Capabilities,
    traits: ProviderTraits,
    request: GenerationRequest,
    requirements: Requirements,
    *,
    expected_latency_s: float,
) -> str | None:
    """Why this provider cannot take ``request`` (``None``: it can)."""
    if request.model not in caps.models:
        return f"does not serve {request.model}"
    if request.width > caps.max_width or request.height > caps.max_height:
        return f"max size {caps.max_width}x{caps.max_height}"
    if request.reference_images and not caps.supports_reference_images:
        return "no reference images"
    if requirements.regions is not None and traits.region not in requirements.regions:
        return f"region {traits.region} not allowed"
    if requirements.no_data_retention and traits.retains_data:
        return "retains data"
    if requirements.no_training and traits.trains_on_data:
        return "trains on customer data"
    if requirements.max_latency_s is not None and expected_latency_s > requirements.max_latency_s:
        return f"expected latency {expected_latency_s:.1f}s over {requirements.max_latency_s:.1f}s"
    return None
