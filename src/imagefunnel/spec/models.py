"""Pydantic models of a job spec: what to generate, how much, how good, at what cost."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_RULE = re.compile(
    r"^\s*(?P<dimension>[a-z_][a-z0-9_]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>-?\d+(?:\.\d+)?)\s*$"
)


class UseCase(StrEnum):
    GENERIC = "generic"
    HEADSHOT = "headshot"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSize(_Strict):
    width: Annotated[int, Field(ge=64, le=4096)] = 512
    height: Annotated[int, Field(ge=64, le=4096)] = 512


class ProviderConstraints(_Strict):
    allow: list[str] = Field(default_factory=list, description="only these providers (empty: all)")
    deny: list[str] = Field(default_factory=list, description="never these providers")

    def permits(self, provider: str) -> bool:
        if provider in self.deny:
            return False
        return not self.allow or provider in self.allow


class Rule(_Strict):
    """A custom rule over one dimension, e.g. ``sharpness >= 0.2``. Parsed, never evaluated as code."""

    expr: str
    name: str | None = None
    severity: Literal["reject", "warn"] = "reject"

    @field_validator("expr")
    @classmethod
    def _parse(cls, value: str) -> str:
        if not _RULE.match(value):
            raise ValueError(f"rule {value!r} must look like 'dimension >= number' (ops: >= <= > < == !=)")
        return value

    @property
    def dimension(self) -> str:
        return self._match()["dimension"]

    @property
    def op(self) -> str:
        return self._match()["op"]

    @property
    def value(self) -> float:
        return float(self._match()["value"])

    def _match(self) -> dict[str, str]:
        found = _RULE.match(self.expr)
        if found is None:  # pragma: no cover - validated on construction
            raise ValueError(self.expr)
        return found.groupdict()


class JobSpec(_Strict):
    """One job: deliver ``deliver`` images that pass every dimension, within budget and deadline."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "job"
    use_case: UseCase = UseCase.HEADSHOT
    prompts: Annotated[list[Annotated[str, Field(min_length=1, max_length=4000)]], Field(min_length=1)]
    model: str = "fal-ai/flux/dev"
    size: ImageSize = ImageSize()
    deliver: int = Field(ge=1, le=10_000, description="K: how many passing images to deliver")
    max_candidates: int | None = Field(default=None, ge=1, le=100_000, description="hard cap on N")
    concurrency: int = Field(default=8, ge=1, le=256)
    references: list[Path] = Field(default_factory=list, description="reference photos of the subject")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-dimension overrides")
    rules: list[Rule] = Field(default_factory=list)
    score_all: bool = False
    budget_usd: float = Field(gt=0, le=1_000_000)
    deadline_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    providers: ProviderConstraints = ProviderConstraints()
    seed: int = 0

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_from_strings(cls, value: object) -> object:
        # Let users write a plain string per rule; the long form carries name and severity.
        if isinstance(value, list):
            return [{"expr": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _caps_consistent(self) -> JobSpec:
        if self.max_candidates is not None and self.max_candidates < self.deliver:
            raise ValueError(f"max_candidates ({self.max_candidates}) is below deliver ({self.deliver})")
        return self

    @property
    def candidate_cap(self) -> int:
        """N: the most candidates the funnel will generate (default 4x K, the seed workflow's ratio)."""
        return self.max_candidates if self.max_candidates is not None else 4 * self.deliver
