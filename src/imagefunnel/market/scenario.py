"""Scenarios: the emulated provider market described as data (YAML in, frozen pydantic models out).

A scenario names the providers the market emulates and how each behaves: what it charges (and how
its price moves over time), how long requests queue and run, how often outputs carry a labelled
defect or show the wrong person, and which faults it injects (5xx, failed requests, garbage outputs,
outages, 429s), steadily or inside timed ``faults`` windows (see ``market.faults``). Besides
hosted APIs it may hold self-hosted ComfyUI GPU boxes (``comfyui_boxes``), each served on its own
port. All times are *scenario seconds*; the server multiplies them by its
``time_factor`` (by default the scenario's own) to get wall-clock time.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imagefunnel.errors import SpecError
from imagefunnel.market.comfyui_box import ComfyUIBox
from imagefunnel.market.cutout_profile import CutoutApiProfile
from imagefunnel.market.defects import Defect
from imagefunnel.market.faults import Fault
from imagefunnel.market.outage import Outage
from imagefunnel.strict_yaml import load_yaml, validate

__all__ = [
    "Fault",
    "Outage",
    "PricePoint",
    "Pricing",
    "ProviderProfile",
    "Scenario",
    "SelfHostedBox",
    "builtin_scenarios",
    "load_scenario",
]

# A scenario file is small; refusing big ones keeps a hostile file from exhausting memory.
_MAX_SCENARIO_BYTES = 1_000_000
# Provider names become the first URL path segment, so they must not shadow the market's own routes.
_RESERVED_NAMES = frozenset({"files", "_market", "v1"})
# The pricing units each wire protocol can express (a protocol missing here accepts any unit).
_UNITS_BY_PROTOCOL: Mapping[str, frozenset[str]] = {
    "fal": frozenset({"megapixel"}),
    "replicate": frozenset({"image", "gpu_second"}),
    "openai": frozenset({"token", "image"}),
    "together": frozenset({"megapixel", "image"}),
}

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PricePoint(_Frozen):
    """From ``after_s`` scenario seconds on, the provider charges ``usd_per_mp`` per unit of its
    pricing (written ``usd`` for units other than megapixels)."""

    after_s: Seconds
    usd_per_mp: Annotated[float, Field(gt=0.0, validation_alias=AliasChoices("usd_per_mp", "usd"))]


class Pricing(_Frozen):
    """What one unit costs: ``usd`` per image, megapixel or GPU-second, or per 1M output tokens
    (``token``, with ``input_usd`` per 1M input tokens)."""

    unit: Literal["image", "megapixel", "gpu_second", "token"]
    usd: Annotated[float, Field(gt=0.0)]
    input_usd: Annotated[float, Field(ge=0.0)] = 0.0


class ProviderProfile(_Frozen):
    """How one emulated provider prices, performs and fails."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    protocol: Literal["fal", "replicate", "openai", "together"]
    models: Annotated[tuple[str, ...], Field(min_length=1)]
    # Either the fal-style shorthand (USD per megapixel) or a ``pricing`` in any unit.
    price_usd_per_mp: Annotated[float, Field(gt=0.0)] | None = None
    pricing: Pricing | None = None
    price_schedule: tuple[PricePoint, ...] = ()
    queue_s: tuple[Seconds, Seconds] = (0.0, 0.0)
    processing_s: tuple[Seconds, Seconds] = (0.1, 0.3)
    defect_rate: Rate = 0.0
    defect_mix: dict[Defect, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {Defect.BLUR: 1.0}
    )
    # What goes wrong with product shots (``market.products``), at the same ``defect_rate``; ``None``:
    # its DEFAULT_PRODUCT_MIX. Face defects are left out of it: a product shot has no face.
    product_defect_mix: dict[Defect, Annotated[float, Field(ge=0.0)]] | None = None
    # Given reference photos of a subject, how often the output shows someone else (``identity_drift``).
    identity_drift_rate: Rate = 0.0
    # Submissions answered with HTTP 5xx (never billed).
    error_5xx_rate: Rate = 0.0
    # Requests that are accepted, run, and end COMPLETED with ``error`` set (never billed).
    failure_rate: Rate = 0.0
    # HTTP 200 + COMPLETED, but the image is black or its bytes are truncated (billed).
    garbage_rate: Rate = 0.0
    outages: tuple[Outage, ...] = ()
    # Timed windows of 429s, 5xx bursts or garbage outputs on a fraction of requests.
    faults: tuple[Fault, ...] = ()
    rate_limit_per_s: Annotated[float, Field(gt=0.0)] | None = None
    # Requests it runs at once (a self-hosted box: its GPUs); the rest wait first in, first out, and a
    # request's ``queue_s`` starts when it gets a slot. ``None``: unbounded, as hosted APIs are.
    # Over HTTP (``market.engine``) a waiting request is queued as its protocol shows it (fal:
    # IN_QUEUE with its queue_position); the virtual-time simulation (``bench.sim``) queues the same.
    slots: Annotated[int, Field(ge=1)] | None = None

    @field_validator("queue_s", "processing_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range [{value[0]}, {value[1]}] has min > max")
        return value

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in _RESERVED_NAMES:
            raise ValueError(f"provider name {value!r} is reserved for the market's own routes")
        return value

    @field_validator("models")
    @classmethod
    def _model_ids(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        protocol = info.data.get("protocol")
        for model in value:
            parts = model.split("/")
            if protocol == "openai":
                # OpenAI model ids are bare names ("gpt-image-1"); they travel in JSON bodies only.
                if len(parts) != 1 or not model or any(c.isspace() for c in model):
                    raise ValueError(f"model id {model!r} must be a bare name like 'gpt-image-1'")
            elif protocol == "replicate" and (len(parts) != 2 or not all(parts)):
                # Replicate builds /v1/models/{owner}/{name}/predictions from it.
                raise ValueError(f"model id {model!r} must look like 'owner/name'")
            elif len(parts) < 2 or not all(parts) or "requests" in parts:
                # fal endpoint ids are owner/alias[/path]; the queue URLs are built from owner/alias.
                raise ValueError(f"model id {model!r} must look like 'owner/alias[/path]'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProviderProfile:
        if (self.price_usd_per_mp is None) == (self.pricing is None):
            raise ValueError("give exactly one of price_usd_per_mp and pricing")
        allowed = _UNITS_BY_PROTOCOL.get(self.protocol)
        if allowed is not None and self.price_unit not in allowed:
            raise ValueError(f"protocol {self.protocol} cannot bill per {self.price_unit}")
        if self.defect_rate > 0 and sum(self.defect_mix.values()) <= 0:
            raise ValueError("defect_mix needs a positive weight when defect_rate > 0")
        times = [point.after_s for point in self.price_schedule]
        if times != sorted(times):
            raise ValueError("price_schedule must be sorted by after_s")
        return self

    @property
    def price_unit(self) -> str:
        """What the unit price is per: image, megapixel, gpu_second or token (1M output tokens)."""
        return self.pricing.unit if self.pricing is not None else "megapixel"

    def price_at(self, t_s: float) -> float:
        """Unit price (USD per ``price_unit``) in force at scenario time ``t_s``."""
        price = self.pricing.usd if self.pricing is not None else float(self.price_usd_per_mp or 0.0)
        for point in self.price_schedule:
            if point.after_s <= t_s:
                price = point.usd_per_mp
        return price

    def outage_at(self, t_s: float) -> bool:
        return any(outage.covers(t_s) for outage in self.outages)

    def faults_at(self, t_s: float) -> tuple[Fault, ...]:
        """The fault windows open at scenario time ``t_s`` (what a hindsight policy may know)."""
        return tuple(fault for fault in self.faults if fault.covers(t_s))


class SelfHostedBox(ComfyUIBox):
    """A self-hosted ComfyUI GPU box of the scenario: the box itself, and the job ``models`` it is
    wired to serve (the demo builds a ComfyUI adapter for each box that serves the job's model)."""

    models: Annotated[tuple[str, ...], Field(min_length=1)]


class Scenario(_Frozen):
    """A named, seeded market: every random draw derives from ``seed``. ``time_factor`` is the pace
    a ``MarketServer`` plays it at unless told otherwise (wall seconds per scenario second)."""

    name: Annotated[str, Field(min_length=1)]
    seed: int = 0
    time_factor: Annotated[float, Field(gt=0.0)] = 1.0
    providers: Annotated[tuple[ProviderProfile, ...], Field(min_length=1)]
    comfyui_boxes: tuple[SelfHostedBox, ...] = ()
    # Hosted background-removal APIs (remove.bg protocol), served by one CutoutServer of their own.
    cutout_apis: tuple[CutoutApiProfile, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Scenario:
        # Box names name adapters too, and the router tells adapters apart by name.
        names = [provider.name for provider in self.providers] + [box.name for box in self.comfyui_boxes]
        names += [api.name for api in self.cutout_apis]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate provider names: {', '.join(duplicates)}")
        return self

    def provider(self, name: str) -> ProviderProfile:
        for profile in self.providers:
            if profile.name == name:
                return profile
        raise KeyError(name)

    def box(self, name: str) -> SelfHostedBox:
        for box in self.comfyui_boxes:
            if box.name == name:
                return box
        raise KeyError(name)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``imagefunnel/market/scenarios``."""
    folder = resources.files("imagefunnel.market") / "scenarios"
    return sorted(item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name (``"demo"``) or a scenario YAML file by path.

    Files are read strictly (see :mod:`imagefunnel.strict_yaml`); every error is one line,
    ``FILE:LINE:COL: field: problem``.
    """
    raw, origin = _read(name_or_path)
    doc = load_yaml(raw, source=origin, max_bytes=_MAX_SCENARIO_BYTES)
    return validate(Scenario, doc, source=origin, what="a scenario")


def _read(name_or_path: str | Path) -> tuple[bytes, str]:
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix in {".yaml", ".yml"} or len(path.parts) > 1:
        if not path.is_file():
            raise SpecError(f"scenario file not found: {path}")
        try:
            with path.open("rb") as handle:
                # One byte past the limit is enough to know the file is too large.
                return handle.read(_MAX_SCENARIO_BYTES + 1), str(path)
        except OSError as exc:
            raise SpecError(f"{path}: cannot read scenario: {exc.strerror or exc}") from exc
    name = str(name_or_path)
    known = builtin_scenarios()
    if name not in known:
        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise SpecError(f"unknown scenario {name!r}{suggestion}; built-in: {', '.join(known)}")
    resource = resources.files("imagefunnel.market") / "scenarios" / f"{name}.yaml"
    return resource.read_bytes(), f"scenario {name!r}"
