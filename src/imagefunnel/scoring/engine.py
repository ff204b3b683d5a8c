"""The scoring engine: decode once, measure cheap dimensions first, stop at the first failure.

A :class:`Scorer` is built once per job from the spec's thresholds and dimension list (both checked
against the registry up front, so a typo fails the job at submission, not at the first candidate)
and then judges any number of images. It holds no per-image state and is safe to share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from types import MappingProxyType

from imagefunnel.errors import ImageError, SpecError
from imagefunnel.imaging import DecodedImage, decode_image
from imagefunnel.scoring import ad_creative as ad_creative  # registers tier 2 of "ad_creative"
from imagefunnel.scoring import alignment as alignment  # registers prompt_alignment (optional CLIP)
from imagefunnel.scoring import color as color  # registers color_cast (tier 1)
from imagefunnel.scoring import cutout as cutout  # registers tier 2 of use case "background_removal"
from imagefunnel.scoring import detail as detail  # registers sharpness and pixelation (tier 1)
from imagefunnel.scoring import generic as generic  # registers tier 1 in default_registry
from imagefunnel.scoring import headshot as headshot  # registers tier 2 of use case "headshot"
from imagefunnel.scoring import nsfw as nsfw  # registers the built-in tier-3 scorers (no NSFW,
from imagefunnel.scoring import portrait as portrait  # face light, colour and focus (headshot)
from imagefunnel.scoring import product as product  # registers tier 2 of use case "product"
from imagefunnel.scoring import text as text  # and no visible text or branding) for every use case
from imagefunnel.scoring.faces import FaceModels, require_face_models
from imagefunnel.scoring.features import ImageFeatures
from imagefunnel.scoring.identity import check_references
from imagefunnel.scoring.registry import (
    Dimension,
    DimensionInfo,
    Need,
    ScorerRegistry,
    ScoringContext,
    default_registry,
    did_you_mean,
)
from imagefunnel.scoring.rules import apply_rules, check_rules, rule_dimensions
from imagefunnel.scoring.verdict import DimensionScore, Direction, Verdict
from imagefunnel.spec import Rule

__all__ = ["Scorer"]

_DECODABLE = "decodable"  # judged here, while decoding; see generic.decodable
_NO_REFERENCES = "the job has no reference photos to compare with"
_log = logging.getLogger(__name__)


class Scorer:
    """Judges images on a fixed set of dimensions with fixed thresholds.

    ``dimensions`` defaults to every tier-1 and tier-3 dimension of ``registry``; ``thresholds`` overrides
    defaults by name. With ``score_all=False`` (the funnel's setting) the first failure ends the
    measuring and the rest are listed in ``Verdict.skipped``; reports use ``score_all=True``.
    ``rules`` (tier 3) are checked against the registry here and judged after the dimensions; the
    dimensions they read are measured even when not listed. A dimension whose model is not installed
    (its probe says why) is skipped in every verdict; :attr:`unavailable` holds the reasons.
    ``use_case`` adds that use case's tier-2 dimensions to the default set. ``context`` is the job's
    (reference photos, prompt), used when :meth:`score` is given none; its reference photos are
    checked for a face and analysed once, here.
    """

    def __init__(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        dimensions: Sequence[str] | None = None,
        score_all: bool = False,
        registry: ScorerRegistry | None = None,
        rules: Sequence[Rule] = (),
        use_case: str | None = None,
        context: ScoringContext | None = None,
        max_bytes: int = 40_000_000,
        max_pixels: int = 40_000_000,
    ) -> None:
        self._registry = registry if registry is not None else default_registry
        self._use_case = use_case
        self._context = context if context is not None else ScoringContext()
        check_rules(rules, known=self._registry.names())
        self._rules = tuple(rules)
        self._plan = self._resolve_dimensions(dimensions)
        self._thresholds = MappingProxyType(self._resolve_thresholds(thresholds or {}))
        self._unavailable = MappingProxyType(self._probe())
        self._plan = tuple(d for d in self._plan if d.name not in self._unavailable)
        self._faces = self._face_models()
        self._score_all = score_all
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels

    def _resolve_dimensions(self, names: Sequence[str] | None) -> tuple[Dimension, ...]:
        if names is None:
            use_case = self._use_case
            own = self._registry.names(tier=2, use_case=use_case) if use_case else ()
            names = [*self._registry.names(tier=1, use_case=use_case), *own]
            names += self._registry.names(tier=3, use_case=use_case)
            names = [
                name
                for name in names
                if self._runs_by_default(self._registry.get(name)) and name not in self._context.waived
            ]
        if isinstance(names, str):  # a lone string would silently become its characters
            raise SpecError(
                f"dimensions must be a list of names, got the string {names!r}", field="dimensions"
            )
        dims = [self._registry.get(name) for name in names]
        dims += [self._registry.get(name) for name in rule_dimensions(self._rules) if name not in names]
        if not dims:
            raise SpecError("no scoring dimensions selected", field="dimensions")
        duplicates = sorted({d.name for d in dims if sum(o.name == d.name for o in dims) > 1})
        if duplicates:
            raise SpecError(f"dimensions listed twice: {', '.join(duplicates)}", field="dimensions")
        # Cheapest first, so that a candidate failing a cheap check never pays for an expensive one.
        return tuple(sorted(dims, key=lambda d: (d.info.cost, d.name)))

    @staticmethod
    def _runs_by_default(dim: Dimension) -> bool:
        return not (dim.info.optional and dim.probe is not None and dim.probe() is not None)

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

    def _probe(self) -> dict[str, str]:
        unavailable = {d.name: why for d in self._plan if d.probe is not None and (why := d.probe())}
        for name, why in unavailable.items():
            _log.warning("dimension %s is skipped: %s", name, why)
        if len(unavailable) == len(self._plan):
            raise SpecError(f"no selected dimension can run here: {'; '.join(unavailable.values())}")
        return unavailable

    def _face_models(self) -> FaceModels | None:
        """The job's face models when a selected dimension needs a face; references checked once."""
        needs = {need for d in self._plan for need in d.info.needs}
        if not needs & {Need.FACE, Need.REFERENCE}:
            return None
        references = self._context.references if Need.REFERENCE in needs else ()
        require_face_models(identity=bool(references))
        models = FaceModels()
        check_references(models, references)
        if Need.REFERENCE in needs and not references:
            _log.warning("%s skipped: %s", ", ".join(self._needing(Need.REFERENCE)), _NO_REFERENCES)
        return models

    def _needing(self, need: Need) -> list[str]:
        return [d.name for d in self._plan if need in d.info.needs]

    def skip_reason(self, name: str, context: ScoringContext | None = None) -> str:
        """Why dimension ``name`` was skipped in a verdict scored with ``context``."""
        context = context if context is not None else self._context
        if name in self._unavailable:
            return self._unavailable[name]
        dim = self._registry.get(name)
        if Need.REFERENCE in context.missing(dim.info.needs):
            return _NO_REFERENCES
        if Need.PROMPT in context.missing(dim.info.needs):
            return "the job has no prompt to compare with"
        missing = context.missing(dim.info.needs)
        if missing:
            return f"the job gives no {', '.join(sorted(need.value for need in missing))}"
        return "an earlier dimension already failed"

    @property
    def context(self) -> ScoringContext:
        """The job's context (references, prompt) used when ``score`` is given none."""
        return self._context

    @property
    def dimensions(self) -> tuple[DimensionInfo, ...]:
        """The dimensions measured, in the order they run (cheapest first)."""
        return tuple(d.info for d in self._plan)

    @property
    def score_all(self) -> bool:
        """Whether every dimension is measured even after one has failed."""
        return self._score_all

    @property
    def unavailable(self) -> Mapping[str, str]:
        """Dimensions that cannot run in this installation, with the reason (read-only)."""
        return self._unavailable

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The tier-3 rules judged after the dimensions."""
        return self._rules

    @property
    def thresholds(self) -> Mapping[str, float]:
        """The effective threshold of every selected dimension (read-only)."""
        return self._thresholds

    def score(
        self,
        image: DecodedImage,
        context: ScoringContext | None = None,
        *,
        cpu_s: MutableMapping[str, float] | None = None,
    ) -> Verdict:
        """Judge one decoded image.

        With ``cpu_s``, the process CPU seconds of each measured dimension are added to it under the
        dimension's name (work shared between dimensions, such as the face analysis, is billed to
        the first that needs it). Process time counts the models' own threads too, so the numbers
        are only meaningful when nothing else runs in the process meanwhile: a benchmark's view.
        """
        context = context if context is not None else self._context
        features = ImageFeatures(image, face_models=self._faces)
        scores: list[DimensionScore] = []
        skipped: list[str] = list(self._unavailable)
        for dim in self._plan:
            if (scores and not scores[-1].passed and not self._score_all) or context.missing(dim.info.needs):
                skipped.append(dim.name)
                continue
            start = time.process_time() if cpu_s is not None else 0.0
            value = dim.measure(features, context)
            if cpu_s is not None:
                cpu_s[dim.name] = cpu_s.get(dim.name, 0.0) + time.process_time() - start
            scores.append(self._judge(dim.info, value))
        return apply_rules(Verdict.of(tuple(scores), tuple(skipped)), self._rules)

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
        skipped = (*(d.name for d in self._plan if d.name != _DECODABLE), *self._unavailable)
        return apply_rules(Verdict.of((failed,), skipped), self._rules)
