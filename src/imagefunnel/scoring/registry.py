"""The scorer registry: every dimension declares what it measures as typed data.

A dimension is a pure function ``(features, context) -> float`` plus a :class:`DimensionInfo`
(name, tier, direction, range, unit, default threshold, relative cost, needed inputs). Dimensions are
registered with a decorator::

    @registry.register(DimensionInfo(name="sharpness", tier=1, ...))
    def sharpness(features: ImageFeatures, context: ScoringContext) -> float: ...

``default_registry`` is the one shared instance; it is filled once, when the modules that define
dimensions are imported (``imagefunnel.scoring`` imports the tier-1 set). Build a separate
:class:`ScorerRegistry` for tests or to run a custom set of dimensions.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from imagefunnel.errors import SpecError
from imagefunnel.imaging import DecodedImage
from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.verdict import Direction
from imagefunnel.spec import CreativeBrief

__all__ = [
    "Dimension",
    "DimensionInfo",
    "Need",
    "Probe",
    "ScoreFn",
    "ScorerRegistry",
    "ScoringContext",
    "default_registry",
    "did_you_mean",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Need(StrEnum):
    """An input a dimension needs beyond the image itself."""

    FACE = "face"  # a detected face; found by the face tier from the image, not given by the caller
    REFERENCE = "reference"  # reference photos in the context
    PROMPT = "prompt"  # the generation prompt in the context
    SOURCE = "source"  # the job's input image: the photo to cut out, or the product's reference photo
    BACKGROUND = "background"  # a required background colour (the job's brief)
    PALETTE = "palette"  # brand colours (the job's brief)
    SAFE_AREAS = "safe_areas"  # areas kept calm for overlaid copy (the job's brief)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringContext:
    """What a job knows beyond the candidate image. Shared by every candidate of a job.

    Tier 2 and 3 extend this (face landmarks, rules); tier 1 ignores it.
    """

    prompt: str | None = None
    references: tuple[DecodedImage, ...] = ()
    source: DecodedImage | None = None
    brief: CreativeBrief | None = None
    # Dimensions the job does not want measured by default (e.g. text, when its brief asks for text).
    waived: frozenset[str] = frozenset()

    def missing(self, needs: Iterable[Need]) -> frozenset[Need]:
        """The needs this context cannot satisfy. FACE is found from the image, so never missing."""
        have = {Need.FACE}
        if self.prompt:
            have.add(Need.PROMPT)
        if self.references:
            have.add(Need.REFERENCE)
        if self.source is not None:
            have.add(Need.SOURCE)
        brief = self.brief
        if brief is not None:
            have |= {n for n, ok in _BRIEF_NEEDS.items() if ok(brief)}
        return frozenset(needs) - have


_BRIEF_NEEDS: dict[Need, Callable[[CreativeBrief], bool]] = {
    Need.BACKGROUND: lambda brief: brief.background is not None,
    Need.PALETTE: lambda brief: bool(brief.palette),
    Need.SAFE_AREAS: lambda brief: bool(brief.safe_areas),
}


ScoreFn = Callable[[ImageFeatures, ScoringContext], float]
# Says why a dimension cannot run in this installation (its model is not installed), or None.
Probe = Callable[[], str | None]
_Fn = TypeVar("_Fn", bound=ScoreFn)


@dataclass(frozen=True, slots=True, kw_only=True)
class DimensionInfo:
    """Everything the engine, the reports and calibration need to know about one dimension."""

    name: str
    tier: int
    direction: Direction
    value_range: tuple[float, float]
    unit: str
    default_threshold: float
    cost: float  # relative cost; the engine runs cheap dimensions first
    fail_label: str  # what a failure means, in a few words: "blurry", "overexposed"
    description: str
    needs: frozenset[Need] = field(default_factory=frozenset)
    decimals: int = 3  # digits shown in reasons
    use_cases: frozenset[str] = field(default_factory=frozenset)  # empty: every use case (tier 1)
    # Use cases the dimension does not apply to: a portrait assumption that a product on white breaks.
    not_for: frozenset[str] = field(default_factory=frozenset)
    # An optional extra (e.g. CLIP): left out of the default set where it cannot run; asked for by
    # name (dimensions, thresholds, rules) it is skipped with its probe's reason, never faked.
    optional: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dimension name {self.name!r} must be lower_snake_case")
        if self.tier not in (1, 2, 3):
            raise ValueError(f"{self.name}: tier must be 1, 2 or 3, got {self.tier}")
        if not isinstance(self.direction, Direction):
            raise TypeError(f"{self.name}: direction must be a Direction, got {self.direction!r}")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"{self.name}: value_range {self.value_range} is empty")
        self.check_threshold(self.default_threshold)
        if not (math.isfinite(self.cost) and self.cost >= 0):
            raise ValueError(f"{self.name}: cost must be a finite number >= 0, got {self.cost}")

    def check_threshold(self, threshold: float) -> None:
        """Raise SpecError unless ``threshold`` is a finite number inside ``value_range``."""
        lo, hi = self.value_range
        if not (isinstance(threshold, int | float) and math.isfinite(threshold) and lo <= threshold <= hi):
            raise SpecError(
                f"threshold for {self.name} must be a number in [{lo:g}, {hi:g}] ({self.unit}), "
                f"got {threshold!r}",
                field=f"thresholds.{self.name}",
            )


@dataclass(frozen=True, slots=True)
class Dimension:
    """A registered dimension: its metadata, the function that measures it, and an optional probe.

    A dimension whose probe gives a reason is skipped by every scorer (with that reason) instead of
    being measured: an optional model that is not installed is never a fake score.
    """

    info: DimensionInfo
    measure: ScoreFn
    probe: Probe | None = None

    @property
    def name(self) -> str:
        return self.info.name


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint for an unknown name: the closest known names, or the list of all of them."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known: " + (", ".join(known) or "none")


class ScorerRegistry:
    """Dimensions by name. Registration order does not matter; the engine orders by cost."""

    def __init__(self, dimensions: Iterable[Dimension] = ()) -> None:
        self._dimensions: dict[str, Dimension] = {}
        for dim in dimensions:
            self.add(dim.info, dim.measure, probe=dim.probe)

    def add(self, info: DimensionInfo, measure: ScoreFn, *, probe: Probe | None = None) -> Dimension:
        if info.name in self._dimensions:
            raise ValueError(f"dimension {info.name!r} is already registered")
        dim = Dimension(info, measure, probe)
        self._dimensions[info.name] = dim
        return dim

    def register(self, info: DimensionInfo, *, probe: Probe | None = None) -> Callable[[_Fn], _Fn]:
        """Decorator: register the decorated function as the measure of ``info``; returns it as is."""

        def decorate(measure: _Fn) -> _Fn:
            self.add(info, measure, probe=probe)
            return measure

        return decorate

    def get(self, name: str) -> Dimension:
        """The dimension called ``name``; SpecError with a did-you-mean hint when there is none."""
        try:
            return self._dimensions[name]
        except KeyError:
            raise SpecError(
                f"unknown scoring dimension {name!r}; {did_you_mean(name, self._dimensions)}",
                field=name,
            ) from None

    def names(self, *, tier: int | None = None, use_case: str | None = None) -> tuple[str, ...]:
        """Registered names, cheapest first (then by name), optionally of one tier only, or only
        those that apply to ``use_case`` (dimensions for every use case, plus its own, less those
        declared ``not_for`` it)."""
        dims = sorted(self._dimensions.values(), key=lambda d: (d.info.cost, d.name))
        return tuple(
            d.name
            for d in dims
            if (tier is None or d.info.tier == tier)
            and (use_case is None or not d.info.use_cases or use_case in d.info.use_cases)
            and (use_case is None or use_case not in d.info.not_for)
        )

    def copy(self) -> ScorerRegistry:
        return ScorerRegistry(self._dimensions.values())

    def __contains__(self, name: object) -> bool:
        return name in self._dimensions

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self._dimensions.values())

    def __len__(self) -> int:
        return len(self._dimensions)


default_registry = ScorerRegistry()
