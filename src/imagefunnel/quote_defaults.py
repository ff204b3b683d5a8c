"""A quote's defaults, apart from :mod:`imagefunnel.quoting` so that the command line can show them
without importing the router, the store and NumPy."""

from __future__ import annotations

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_SIMULATIONS"]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_SIMULATIONS = 2000
