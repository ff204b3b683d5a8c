"""Pydantic models of a job spec: what to generate, how much, how good, at what cost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from imagefunnel.use_cases import UseCase as UseCase  # re-exported: the spec models name it

# One comparison: ``dimension op number``. Parsed by this pattern, never evaluated as code.
_RULE = re.compile(
    r"^\s*(?P<dimension>[a-z_][a-z0-9_]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
MAX_RULE_ITEMS = 64  # per all/any list; the YAML loader already caps nesting depth


def _nameable(path: Path) -> Path:
    # No file name can hold a NUL byte; without this check the first read fails with a ValueError.
    if "\x00" in str(path):
        raise PydanticCustomError("path_nul", "contains a NUL byte (\\0), which no file name can hold")
    return path


# A path to a file the user supplies (reference photos, the input image).
ImagePath = Annotated[Path, AfterValidator(_nameable)]


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
    """A custom rule over measured dimensions. Parsed, never evaluated as code.

    Exactly one of: ``expr``, one comparison such as ``eyes_open >= 0.25``; ``all``, a list of rules
    that must all hold; ``any``, a list of which at least one must hold. Items of ``all``/``any`` are
    rules themselves (strings or mappings), nested to any depth. ``name`` labels the rule in
    verdicts; ``severity`` (``reject`` or ``warn``) belongs to the top-level rule only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    expr: str | None = None
    all_of: list[Rule] | None = Field(default=None, alias="all", max_length=MAX_RULE_ITEMS)
    any_of: list[Rule] | None = Field(default=None, alias="any", max_length=MAX_RULE_ITEMS)
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    severity: Literal["reject", "warn"] = "reject"

    @field_validator("expr")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None and not _RULE.match(value):
            raise ValueError(f"rule {value!r} must look like 'dimension >= number' (ops: >= <= > < == !=)")
        return value

    @field_validator("all_of", "any_of", mode="before")
    @classmethod
    def _items_from_strings(cls, value: object) -> object:
        return _rules_from_strings(value)

    @model_validator(mode="after")
    def _one_form(self) -> Rule:
        forms = [
            form
            for form, set_ in (("expr", self.expr), ("all", self.all_of), ("any", self.any_of))
            if set_ is not None
        ]
        if len(forms) != 1:
            found = " and ".join(forms) or "none of them"
            raise ValueError(f"a rule needs exactly one of expr, all or any (found {found})")
        if self.children is not None and not self.children:
            raise ValueError(f"'{forms[0]}' needs at least one rule")
        for child in self.children or ():
            if "severity" in child.model_fields_set:
                raise ValueError("severity applies to a whole rule: set it on the top-level rule only")
        return self

    @property
    def mode(self) -> Literal["expr", "all", "any"]:
        """Which form this rule has."""
        if self.all_of is not None:
            return "all"
        if self.any_of is not None:
            return "any"
        return "expr"

    @property
    def children(self) -> list[Rule] | None:
        """The rules combined by ``all``/``any``; None for a comparison."""
        return self.all_of if self.all_of is not None else self.any_of

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension this rule reads, in order of appearance, each once."""
        if self.expr is not None:
            return (self.dimension,)
        names = (name for child in self.children or () for name in child.dimensions)
        return tuple(dict.fromkeys(names))

    @property
    def label(self) -> str:
        """The rule's name, or its text: ``sharpness >= 0.2``, ``any(a > 1, b < 2)``."""
        return self.name or self.text

    @property
    def text(self) -> str:
        """The rule written out in one line, whatever its name."""
        if self.expr is not None:
            return f"{self.dimension} {self.op} {self.value:g}"
        inner = ", ".join(child.label for child in self.children or ())
        return f"{self.mode}({inner})"

    @property
    def dimension(self) -> str:
        """The dimension a comparison reads; ValueError for ``all``/``any`` rules."""
        return self._match()["dimension"]

    @property
    def op(self) -> str:
        return self._match()["op"]

    @property
    def value(self) -> float:
        return float(self._match()["value"])

    def _match(self) -> dict[str, str]:
        found = _RULE.match(self.expr) if self.expr is not None else None
        if found is None:
            raise ValueError(f"rule {self.label!r} is an {self.mode!r} combination, not one comparison")
        return found.groupdict()


_HEX_COLOR = r"^#[0-9a-fA-F]{6}$"


class SafeArea(_Strict):
    """A rectangle of the frame kept calm for overlaid copy, in fractions of width and height."""

    x: Annotated[float, Field(ge=0.0, le=1.0)]
    y: Annotated[float, Field(ge=0.0, le=1.0)]
    width: Annotated[float, Field(gt=0.0, le=1.0)]
    height: Annotated[float, Field(gt=0.0, le=1.0)]

    @model_validator(mode="after")
    def _inside(self) -> SafeArea:
        if self.x + self.width > 1.0 + 1e-9 or self.y + self.height > 1.0 + 1e-9:
            raise ValueError("a safe area must lie inside the frame (x + width ≤ 1, y + height ≤ 1)")
        return self


class CreativeBrief(_Strict):
    """What product shots and ad creatives must respect beyond image quality."""

    background: Annotated[str, Field(pattern=_HEX_COLOR)] | None = Field(
        default=None, description="required background colour, e.g. '#ffffff' (None: any clean one)"
    )
    palette: list[Annotated[str, Field(pattern=_HEX_COLOR)]] = Field(
        default_factory=list, max_length=32, description="brand colours"
    )
    palette_delta_e: float = Field(default=10.0, gt=0, le=100, description="CIEDE2000 tolerance")
    safe_areas: list[SafeArea] = Field(default_factory=list, max_length=16)
    allow_text: bool = Field(default=False, description="text in the image is wanted (no text check)")


def _rules_from_strings(value: object) -> object:
    # Let users write a plain string per rule; the long form carries name, severity, all and any.
    if isinstance(value, list):
        return [{"expr": item} if isinstance(item, str) else item for item in value]
    return value


class JobSpec(_Strict):
    """One job: deliver ``deliver`` images that pass every dimension, within budget and deadline."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "job"
    use_case: UseCase = UseCase.HEADSHOT
    # Required except for background removal, whose providers take an image, not a prompt.
    prompts: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(
        default_factory=list, validate_default=True
    )
    model: str = "fal-ai/flux/dev"
    size: ImageSize = ImageSize()
    deliver: int = Field(ge=1, le=10_000, description="K: how many passing images to deliver")
    max_candidates: int | None = Field(default=None, ge=1, le=100_000, description="hard cap on N")
    concurrency: int = Field(default=8, ge=1, le=256)
    references: list[ImagePath] = Field(default_factory=list, description="reference photos of the subject")
    source: ImagePath | None = Field(
        default=None,
        description="background_removal: the photo to cut out; product, ad_creative: a reference "
        "photo of the product (colour fidelity). Sent to providers as the request's input image.",
    )
    brief: CreativeBrief = CreativeBrief()
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-dimension overrides")
    rules: list[Rule] = Field(default_factory=list)
    score_all: bool = False
    budget_usd: float = Field(gt=0, le=1_000_000)
    deadline_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    confidence: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="refuse to start unless the quote delivers all K within budget and deadline "
        "with at least this probability (e.g. 0.99)",
    )
    providers: ProviderConstraints = ProviderConstraints()
    seed: int = 0

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_from_strings(cls, value: object) -> object:
        return _rules_from_strings(value)

    @field_validator("prompts")
    @classmethod
    def _prompted(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value and info.data.get("use_case") != UseCase.BACKGROUND_REMOVAL:
            # A "missing" error, like any absent required field (the loader names no line for it).
            raise PydanticCustomError("missing", "is required (only background_removal takes no prompt)")
        return value

    @model_validator(mode="after")
    def _caps_consistent(self) -> JobSpec:
        if self.max_candidates is not None and self.max_candidates < self.deliver:
            raise ValueError(f"max_candidates ({self.max_candidates}) is below deliver ({self.deliver})")
        if self.use_case == UseCase.BACKGROUND_REMOVAL and self.source is None:
            raise ValueError("a background_removal job needs 'source': the photo to cut out")
        return self

    @property
    def candidate_cap(self) -> int:
        """N: the most candidates the funnel will generate (default 4x K, the seed workflow's ratio)."""
        return self.max_candidates if self.max_candidates is not None else 4 * self.deliver
