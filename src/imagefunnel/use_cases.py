"""The use cases a job can name. A module of its own, free of Pydantic, so that the command line
can offer them as choices without importing the spec models (``imagefunnel --help`` stays quick)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["UseCase"]


class UseCase(StrEnum):
    GENERIC = "generic"
    HEADSHOT = "headshot"
    BACKGROUND_REMOVAL = "background_removal"  # input image in (``source``), RGBA cutout out
    PRODUCT = "product"
    AD_CREATIVE = "ad_creative"
