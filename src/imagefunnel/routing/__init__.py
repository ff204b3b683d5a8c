"""Routing: pick a provider per request, fall back on failure, record every spend."""

from imagefunnel.routing.health import HealthTracker
from imagefunnel.routing.router import AttemptLedger, RouteContext, Router

__all__ = ["AttemptLedger", "HealthTracker", "RouteContext", "Router"]
