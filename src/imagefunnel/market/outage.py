"""An outage window, shared by the hosted providers of a scenario and its self-hosted ComfyUI boxes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Outage"]


class Outage(BaseModel):
    """A window during which every API call to the provider answers 503."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_s: Annotated[float, Field(ge=0.0)]
    end_s: Annotated[float, Field(ge=0.0)]

    @model_validator(mode="after")
    def _ordered(self) -> Outage:
        if self.end_s <= self.start_s:
            raise ValueError(f"outage ends ({self.end_s}) before it starts ({self.start_s})")
        return self

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s
