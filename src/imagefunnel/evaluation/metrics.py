"""Score a labelled development set and measure each dimension against the labels.

Scoring measures every dimension of every image once (``score_all``), keeping the values; judging
is then a pure function of values and thresholds, so the same scores serve the evaluation at the
default thresholds and at calibrated ones.

Per dimension ``d``: *positives* are the defective images whose labels expect ``d`` to reject them;
``recall`` is the share of them that ``d`` rejects (``hard_recall``: only defects at strength ≥
:data:`HARD_STRENGTH`). ``false_reject_rate`` is the share of clean images ``d`` rejects.
``precision`` is the share of ``d``'s rejections that hit a defective image (any defect: rejecting a
noisy image for its blur is still a right rejection).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from imagefunnel.errors import ImageError
from imagefunnel.evaluation.manifest import DevSetError, DevSetManifest, LabeledImage
from imagefunnel.evaluation.photos import photo
from imagefunnel.imaging import DecodedImage, read_image_file
from imagefunnel.scoring import Direction, Scorer, ScoringContext

__all__ = [
    "HARD_STRENGTH",
    "DimensionStats",
    "EvalReport",
    "ScoredImage",
    "SourceRejects",
    "evaluate",
    "score_devset",
]

HARD_STRENGTH = 0.5  # the market injects defects at 0.5-1.0: at least that strong must be caught


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """One labelled image and the value of every dimension measured on it."""

    label: LabeledImage
    values: Mapping[str, float]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class DimensionStats:
    name: str
    threshold: float
    positives: int = 0
    caught: int = 0
    hard_positives: int = 0
    hard_caught: int = 0
    clean: int = 0
    false_rejects: int = 0
    rejected: int = 0
    rejected_defective: int = 0

    @property
    def recall(self) -> float | None:
        return _ratio(self.caught, self.positives)

    @property
    def hard_recall(self) -> float | None:
        return _ratio(self.hard_caught, self.hard_positives)

    @property
    def false_reject_rate(self) -> float | None:
        return _ratio(self.false_rejects, self.clean)

    @property
    def precision(self) -> float | None:
        return _ratio(self.rejected_defective, self.rejected)


@dataclass(frozen=True, slots=True)
class SourceRejects:
    """The clean images of one source photo, and which of them were rejected, by what."""

    source: str
    clean: int
    rejected: tuple[tuple[str, tuple[str, ...]], ...]  # (variant, dimensions that rejected it)


@dataclass(frozen=True, slots=True)
class EvalReport:
    images: int
    dimensions: tuple[DimensionStats, ...]
    # confusion[label][dimension] = images of that label the dimension rejected; label "clean" too.
    confusion: Mapping[str, Mapping[str, int]]
    label_counts: Mapping[str, int]
    caught_by_any: Mapping[str, int]  # images of each label rejected by at least one dimension
    per_source: tuple[SourceRejects, ...]
    not_scored: tuple[str, ...] = ()  # expected dimensions this scorer does not measure
    recall_by_strength: Mapping[str, Mapping[float, tuple[int, int]]] = field(default_factory=dict)

    def stats(self, name: str) -> DimensionStats:
        return next(d for d in self.dimensions if d.name == name)

    @property
    def clean_false_reject_rate(self) -> float | None:
        """Share of clean images rejected by at least one dimension: what the cascade throws away."""
        return _ratio(self.caught_by_any.get("clean", 0), self.label_counts.get("clean", 0))


def _references(manifest: DevSetManifest) -> dict[str, DecodedImage]:
    # The untouched source photo is each image's reference (identity, skin tone vs reference).
    return {s.name: DecodedImage.from_array(photo(s.name).rgb) for s in manifest.sources}


def _score_one(folder: Path, scorer: Scorer, label: LabeledImage, reference: DecodedImage) -> ScoredImage:
    path = folder / label.file
    try:
        data = read_image_file(path)  # a dev set is a user's folder: refuse pipes, bound the read
    except ImageError as exc:
        raise DevSetError(f"{path}: {exc}") from exc
    verdict = scorer.score_bytes(data, ScoringContext(references=(reference,)))
    return ScoredImage(label, {s.name: s.value for s in verdict.scores})


def score_devset(
    folder: Path,
    manifest: DevSetManifest,
    scorer: Scorer,
    *,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ScoredImage]:
    """Measure every image of the set (in manifest order). ``scorer`` should have ``score_all``."""
    refs = _references(manifest)
    jobs = [(label, refs[label.source]) for label in manifest.images]
    results: Iterable[ScoredImage]
    if executor is None:
        results = (_score_one(folder, scorer, label, ref) for label, ref in jobs)
    else:
        results = executor.map(lambda job: _score_one(folder, scorer, job[0], job[1]), jobs)
    scored = []
    for item in results:
        scored.append(item)
        if progress is not None:
            progress(len(scored))
    return scored


def rejects(value: float, threshold: float, direction: Direction) -> bool:
    return not direction.passes(value, threshold)


def _dimension_stats(
    name: str, threshold: float, direction: Direction, scored: Sequence[ScoredImage]
) -> DimensionStats:
    counts: Counter[str] = Counter()
    for item in scored:
        if name not in item.values:
            continue
        label, hit = item.label, rejects(item.values[name], threshold, direction)
        hard = label.strength >= HARD_STRENGTH
        if label.clean:
            counts.update(clean=1, false_rejects=hit)
        if name in label.expect:
            counts.update(positives=1, caught=hit, hard_positives=hard, hard_caught=hard and hit)
        counts.update(rejected=hit, rejected_defective=hit and not label.clean)
    return DimensionStats(name=name, threshold=threshold, **counts)


def _per_source(failed: Sequence[tuple[ScoredImage, tuple[str, ...]]]) -> tuple[SourceRejects, ...]:
    clean: Counter[str] = Counter()
    rejected: defaultdict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for item, dims in failed:
        if item.label.clean:
            clean[item.label.source] += 1
            if dims:
                rejected[item.label.source].append((item.label.variant, dims))
    return tuple(SourceRejects(src, clean[src], tuple(rejected[src])) for src in sorted(clean))


def evaluate(
    scored: Sequence[ScoredImage],
    *,
    thresholds: Mapping[str, float],
    directions: Mapping[str, Direction],
) -> EvalReport:
    """Judge the measured values at ``thresholds`` and compare with the labels."""
    names = [name for name in thresholds if name in directions]
    failed = [
        (
            item,
            tuple(
                n for n in names if n in item.values and rejects(item.values[n], thresholds[n], directions[n])
            ),
        )
        for item in scored
    ]
    confusion: defaultdict[str, Counter[str]] = defaultdict(Counter)
    label_counts: Counter[str] = Counter()
    caught_by_any: Counter[str] = Counter()
    by_strength: defaultdict[str, dict[float, tuple[int, int]]] = defaultdict(dict)
    for item, dims in failed:
        label = item.label
        label_counts[label.label] += 1
        caught_by_any[label.label] += bool(dims)
        confusion[label.label].update(dims)
        if not label.clean:
            n, hit = by_strength[label.label].get(label.strength, (0, 0))
            by_strength[label.label][label.strength] = (n + 1, hit + bool(set(dims) & set(label.expect)))
    wanted = {name for item in scored for name in item.label.expect}
    return EvalReport(
        images=len(scored),
        dimensions=tuple(_dimension_stats(n, thresholds[n], directions[n], scored) for n in names),
        confusion={label: dict(row) for label, row in confusion.items()},
        label_counts=dict(label_counts),
        caught_by_any=dict(caught_by_any),
        per_source=_per_source(failed),
        not_scored=tuple(sorted(wanted - set(names))),
        recall_by_strength={label: dict(sorted(row.items())) for label, row in by_strength.items()},
    )
