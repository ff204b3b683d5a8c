"""The scoring engine: decode once, measure cheap dimensions first, stop at the first failure.

A :class:`Scorer` is built once per job from the spec's thresholds and dimension list (both checked
against the registry up front, so a typo fails the job at submission, not at the first candidate)
and then judges any number of images. It holds no per-image state and is safe to share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from imagefunnel.errors import ImageError, SpecError
from imagefunnel.imaging import DecodedImage, decode_image
from imagefunnel.scoring import generic as generic  # registers tier 1 in default_registry
from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.registry import (
    Dimension,
    DimensionInfo,
    ScorerRegistry,
    ScoringContext,
    default_registry,
    did_you_mean,
)
from imagefunnel.scoring.verdict import DimensionScore, Direction, Verdict

__all__ = ["Scorer"]

_DECODABLE = "decodable"  # judged here, while decoding; see generic.decodable


class Scorer:
    """Judges images on a fixed set of dimensions with fixed thresholds.

    ``dimensions`` defaults to every tier-1 dimension of ``registry``; ``thresholds`` overrides
    defaults by name. With ``score_all=False`` (the funnel's setting) the first failure ends the
    measuring and the rest are listed in ``Verdict.skipped``; reports use ``score_all=True``.
    """

    def __init__(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        dimensions: Sequence[str] | None = None,
        score_all: bool = False,
        registry: ScorerRegistry | None = None,
        max_bytes: int = 40_000_000,
        max_pixels: int = 40_000_000,
    ) -> None:
        self._registry = registry if registry is not None else default_registry
        self._plan = self._resolve_dimensions(dimensions)
        self._thresholds = MappingProxyType(self._resolve_thresholds(thresholds or {}))
        self._score_all = score_all
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels

    def _resolve_dimensions(self, names: Sequence[str] | None) -> tuple[Dimension, ...]:
        if names is None:
            names = self._registry.names(tier=1)
        if isinstance(names, str):  # a lone string would silently become its characters
            raise SpecError(
                f"dimensions must be a list of names, got the string {names!r}", field="dimensions"
            )
        dims = [self._registry.get(name) for name in names]
        if not dims:
            raise SpecError("no scoring dimensions selected", field="dimensions")
        duplicates = sorted({d.name for d in dims if sum(o.name == d.name for o in dims) > 1})
        if duplicates:
            raise SpecError(f"dimensions listed twice: {', '.join(duplicates)}", field="dimensions")
        # Cheapest first, so that a candidate failing a cheap check never pays for an expensive one.
        return tuple(sorted(dims, key=lambda d: (d.info.cost, d.name)))

    def _resolve_thresholds(self, overrides: Mapping[str, float]) -> dict[str, float]:
        selected = {d.name: d.info for d in self._plan}
        for name, value in overrides.items():
            if name not in selected:
                where = "is not among the scored dimensions" if name in self._registry else "is unknown"
                raise SpecError(
                    f"threshold for {name!r}: dimension {where}; {did_you_mean(name, selected)}",
                    field=f"thresholds.{name}",
                )
            selected[name].check_threshold(value)
        return {name: float(overrides.get(name, info.default_threshold)) for name, info in selected.items()}

    @property
    def dimensions(self) -> tuple[DimensionInfo, ...]:
        """The dimensions measured, in the order they run (cheapest first)."""
        return tuple(d.info for d in self._plan)

    @property
    def score_all(self) -> bool:
        """Whether every dimension is measured even after one has failed."""
        return self._score_all

    @property
    def thresholds(self) -> Mapping[str, float]:
        """The effective threshold of every selected dimension (read-only)."""
        return self._thresholds

    def score(self, image: DecodedImage, context: ScoringContext | None = None) -> Verdict:
        """Judge one decoded image."""
        context = context if context is not None else ScoringContext()
        features = ImageFeatures(image)
        scores: list[DimensionScore] = []
        skipped: list[str] = []
        for dim in self._plan:
            if (scores and not scores[-1].passed and not self._score_all) or context.missing(dim.info.needs):
                skipped.append(dim.name)
                continue
            scores.append(self._judge(dim.info, dim.measure(features, context)))
        return Verdict.of(tuple(scores), tuple(skipped))

    def score_bytes(self, data: bytes, context: ScoringContext | None = None) -> Verdict:
        """Decode and judge; bytes that do not decode yield a failing ``decodable`` dimension."""
        try:
            image = decode_image(data, max_bytes=self._max_bytes, max_pixels=self._max_pixels)
        except ImageError as exc:
            return self._undecodable(exc)
        return self.score(image, context)

    def score_many(
        self, images: Iterable[DecodedImage | bytes], context: ScoringContext | None = None
    ) -> list[Verdict]:
        """Judge a batch in order; bytes are decoded, decoded images are used as they are."""
        return [
            self.score(item, context) if isinstance(item, DecodedImage) else self.score_bytes(item, context)
            for item in images
        ]

    def _judge(self, info: DimensionInfo, value: float) -> DimensionScore:
        return DimensionScore.judge(
            name=info.name,
            tier=info.tier,
            value=value,
            threshold=self._thresholds[info.name],
            direction=info.direction,
            fail_label=info.fail_label,
            decimals=info.decimals,
        )

    def _undecodable(self, exc: ImageError) -> Verdict:
        # The decoder's message is more useful than "0 < 1": it says truncated, bomb, wrong type.
        failed = DimensionScore(
            name=_DECODABLE,
            tier=1,
            value=0.0,
            threshold=1.0,
            direction=Direction.HIGHER_IS_BETTER,
            passed=False,
            reason=f"{_DECODABLE}: {exc}",
        )
        skipped = tuple(d.name for d in self._plan if d.name != _DECODABLE)
        return Verdict.of((failed,), skipped)
