"""``imagefunnel devset``, ``eval``, ``calibrate`` and ``bench scoring``: judge the judges.

The commands are plain functions with typer annotations; ``cli/app.py`` registers them::

    app.command("devset")(devset_cmd)
    app.command("eval")(eval_cmd)
    app.command("calibrate")(calibrate_cmd)

and ``cli/bench.py`` adds ``bench_scoring_cmd`` to its ``bench_app`` as ``bench scoring``. Heavy modules
are imported inside the commands, so that registering them costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.errors import ImageFunnelError

if TYPE_CHECKING:  # the commands import their heavy modules when run, so `--help` stays fast
    from imagefunnel.evaluation import DevSetManifest, EvalReport, ScoredImage
    from imagefunnel.evaluation.heldout import HeldOut
    from imagefunnel.scoring import Scorer

__all__ = [
    "bench_scoring_cmd",
    "calibrate_cmd",
    "devset_cmd",
    "eval_cmd",
    "heldout_dict",
    "render_heldout",
    "render_report",
    "report_dict",
]

console = Console()

DevSetDir = Annotated[Path, typer.Argument(help="folder with a dev set's images and labels.json")]
UseCase = Annotated[str, typer.Option(help="use case whose dimensions are scored (tiers 1, 2 and 3)")]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _thresholds(spec: Path | None, thresholds: Path | None) -> dict[str, float] | None:
    import yaml

    from imagefunnel.spec import load_spec

    if spec is not None and thresholds is not None:
        raise ImageFunnelError("give --spec or --thresholds, not both")
    if spec is not None:
        return dict(load_spec(spec).thresholds) or None
    if thresholds is None:
        return None
    try:
        data = yaml.safe_load(thresholds.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImageFunnelError(f"{thresholds}: cannot read thresholds: {exc}") from exc
    found = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(found, dict) or not all(isinstance(v, int | float) for v in found.values()):
        raise ImageFunnelError(f"{thresholds}: expected a 'thresholds:' mapping of dimension: number")
    return {str(k): float(v) for k, v in found.items()}


def _score(folder: Path, scorer: Scorer) -> list[ScoredImage]:
    from imagefunnel.evaluation import load_manifest

    manifest = load_manifest(folder)
    return _score_manifest(folder, manifest, scorer)


def _score_manifest(folder: Path, manifest: DevSetManifest, scorer: Scorer) -> list[ScoredImage]:
    from imagefunnel.evaluation import score_devset
    from imagefunnel.executors import local_executor

    with local_executor() as executor, console.status(f"scoring {len(manifest.images)} images") as status:

        def progress(done: int) -> None:
            status.update(f"scoring {done}/{len(manifest.images)} images")

        return score_devset(folder, manifest, scorer, executor=executor, progress=progress)


def report_dict(report: EvalReport) -> dict[str, object]:
    """The report as plain JSON-ready data."""
    return {
        "images": report.images,
        "clean_false_reject_rate": report.clean_false_reject_rate,
        "dimensions": [
            {
                "name": d.name,
                "threshold": d.threshold,
                "positives": d.positives,
                "recall": d.recall,
                "hard_recall": d.hard_recall,
                "clean": d.clean,
                "false_rejects": d.false_rejects,
                "false_reject_rate": d.false_reject_rate,
                "precision": d.precision,
            }
            for d in report.dimensions
        ],
        "confusion": report.confusion,
        "label_counts": report.label_counts,
        "caught_by_any": report.caught_by_any,
        "recall_by_strength": {
            k: {str(s): list(v) for s, v in row.items()} for k, row in report.recall_by_strength.items()
        },
        "false_rejects_per_source": {
            s.source: {"clean": s.clean, "rejected": [{"variant": v, "by": list(d)} for v, d in s.rejected]}
            for s in report.per_source
        },
        "not_scored": list(report.not_scored),
    }


def _dimension_table(report: EvalReport) -> Table:
    from imagefunnel.evaluation import HARD_STRENGTH

    table = Table(title="Per dimension", title_justify="left")
    for col in (
        "dimension",
        "threshold",
        "recall",
        f"hard recall (≥{HARD_STRENGTH:g})",
        "clean false rejects",
        "precision",
    ):
        table.add_column(col, justify="left" if col == "dimension" else "right")
    for d in report.dimensions:
        recall = f"{_pct(d.recall)} ({d.caught}/{d.positives})" if d.positives else "—"
        hard = f"{_pct(d.hard_recall)} ({d.hard_caught}/{d.hard_positives})" if d.hard_positives else "—"
        table.add_row(
            d.name,
            f"{d.threshold:g}",
            recall,
            hard,
            f"{_pct(d.false_reject_rate)} ({d.false_rejects}/{d.clean})",
            _pct(d.precision),
        )
    return table


def _confusion_table(report: EvalReport) -> Table:
    table = Table(title="Confusion: which dimensions rejected each kind of image", title_justify="left")
    for col in ("label", "images", "rejected", "by strength (caught by its dimensions)", "rejected by"):
        table.add_column(col)
    for label in sorted(report.label_counts, key=lambda k: (k != "clean", k)):
        row = report.confusion.get(label, {})
        by = ", ".join(f"{dim} {n}" for dim, n in sorted(row.items(), key=lambda kv: (-kv[1], kv[0])))
        strengths = "  ".join(
            f"{s:g}: {hit}/{n}" for s, (n, hit) in report.recall_by_strength.get(label, {}).items()
        )
        table.add_row(
            label, str(report.label_counts[label]), str(report.caught_by_any.get(label, 0)), strengths, by
        )
    return table


def _source_table(report: EvalReport) -> Table:
    table = Table(title="Clean images falsely rejected, per source photo", title_justify="left")
    for col in ("source", "clean", "rejected", "which (variant: dimensions)"):
        table.add_column(col)
    for s in report.per_source:
        which = "; ".join(f"{variant}: {', '.join(dims)}" for variant, dims in s.rejected)
        table.add_row(s.source, str(s.clean), str(len(s.rejected)), which or "—")
    return table


def render_report(report: EvalReport, out: Console) -> None:
    out.print(_dimension_table(report))
    out.print(_confusion_table(report))
    out.print(_source_table(report))
    out.print(f"clean images rejected by any dimension: {_pct(report.clean_false_reject_rate)}")
    if report.not_scored:
        out.print(f"[yellow]labelled for dimensions not scored here:[/] {', '.join(report.not_scored)}")


def heldout_dict(held: HeldOut) -> dict[str, object]:
    """Leave-one-person-out results as plain JSON-ready data."""

    def rate(r: object) -> dict[str, object]:
        from imagefunnel.evaluation.heldout import Rate

        assert isinstance(r, Rate)
        low, high = r.interval
        return {"part": r.part, "whole": r.whole, "rate": r.value, "ci95": [low, high]}

    return {
        "in_sample": {
            "clean_false_reject": rate(held.in_sample_clean),
            "hard_recall": rate(held.in_sample_hard),
        },
        "held_out": {
            "clean_false_reject": rate(held.held_out_clean),
            "hard_recall": rate(held.held_out_hard),
        },
        "people": {
            p.person: {
                "clean_false_reject": rate(p.clean),
                "hard_recall": rate(p.hard),
                "rejected": [{"file": f, "by": list(d)} for f, d in p.rejected],
            }
            for p in held.people
        },
        "thresholds": dict(held.thresholds),
    }


def render_heldout(held: HeldOut, out: Console, *, fitted: str) -> None:
    """The headline numbers, in-sample next to leave-one-person-out, then one row per person."""
    table = Table(title=f"Leave one person out: thresholds fitted by {fitted}", title_justify="left")
    for col in ("", "hard-defect recall", "clean false rejects"):
        table.add_column(col)
    table.add_row("in-sample (fitted on everyone)", str(held.in_sample_hard), str(held.in_sample_clean))
    table.add_row("held-out person (fitted without them)", str(held.held_out_hard), str(held.held_out_clean))
    out.print(table)
    people = Table(title="Each person held out in turn", title_justify="left")
    for col in ("person", "hard-defect recall", "clean false rejects", "rejected (file: dimensions)"):
        people.add_column(col)
    for p in held.people:
        which = "; ".join(f"{f}: {', '.join(d)}" for f, d in p.rejected)
        people.add_row(p.person, str(p.hard), str(p.clean), which or "—")
    out.print(people)


def devset_cmd(
    out: Annotated[Path, typer.Argument(help="new (or empty) folder to write the dev set into")],
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    photo: Annotated[list[str] | None, typer.Option(help="source photo (repeatable; default: all)")] = None,
    defect: Annotated[list[str] | None, typer.Option(help="defect (repeatable; default: all)")] = None,
    strength: Annotated[list[float] | None, typer.Option(help="defect strength (repeatable)")] = None,
) -> None:
    """Write a labelled development set: clean variants of real portraits and injected defects."""
    from imagefunnel.evaluation import DEFAULT_STRENGTHS, DevSetConfig, generate_devset

    config = DevSetConfig(
        seed=seed,
        photos=tuple(photo) if photo else None,
        defects=tuple(defect) if defect else None,
        strengths=tuple(strength) if strength else DEFAULT_STRENGTHS,
    )
    manifest = generate_devset(out, config)
    clean = sum(image.clean for image in manifest.images)
    console.print(
        f"wrote {len(manifest.images)} images ({clean} clean) from {len(manifest.sources)} photos to {out}"
        + (f"; skipped {len(manifest.skipped)}" if manifest.skipped else "")
    )


def eval_cmd(
    folder: DevSetDir,
    use_case: UseCase = "headshot",
    spec: Annotated[Path | None, typer.Option(help="job spec whose thresholds apply")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="thresholds YAML (as written by calibrate)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Score a labelled folder; per-dimension recall, precision, false rejects, confusion table.
    Exit code 0: it ran (the numbers are a report, not a verdict); 2: invalid input."""
    from imagefunnel.evaluation import evaluate, load_manifest
    from imagefunnel.evaluation.heldout import fit_validated_headroom, leave_one_person_out

    scorer = _scorer(use_case, _thresholds(spec, thresholds))
    manifest = load_manifest(folder)
    scored = _score_manifest(folder, manifest, scorer)
    directions = {d.name: d.direction for d in scorer.dimensions}
    report = evaluate(scored, thresholds=dict(scorer.thresholds), directions=directions)
    persons = {s.name: s.person for s in manifest.sources}
    held = leave_one_person_out(
        scored,
        fit=fit_validated_headroom({d.name: d for d in scorer.dimensions}, persons=persons),
        directions=directions,
        persons=persons,
    )
    if json_out:
        console.print_json(json.dumps({**report_dict(report), "leave_one_person_out": heldout_dict(held)}))
    else:
        render_report(report, console)
        render_heldout(
            held,
            console,
            fitted="the defaults' rule (clean 99.5th percentile + a headroom of its distance from the median, "
            "the narrowest that rejects no more clean images of a person left out of the training set; no "
            "stricter than the clean extreme + the largest step one person's clean extreme lies beyond the rest)",
        )


def calibrate_cmd(
    folder: DevSetDir,
    max_false_reject: Annotated[
        float, typer.Option(help="share of clean images a dimension may reject")
    ] = 0.05,
    use_case: UseCase = "headshot",
    out: Annotated[Path | None, typer.Option(help="YAML to write (default: FOLDER/thresholds.yaml)")] = None,
) -> None:
    """Per-dimension thresholds from a labelled folder, written as a spec's `thresholds:` YAML."""
    from imagefunnel.evaluation import calibrate, thresholds_yaml

    if not 0.0 <= max_false_reject < 1.0:
        raise typer.BadParameter("must be in [0, 1)", param_hint="--max-false-reject")
    from imagefunnel.evaluation import load_manifest
    from imagefunnel.evaluation.heldout import leave_one_person_out

    scorer = _scorer(use_case, None)
    manifest = load_manifest(folder)
    scored = _score_manifest(folder, manifest, scorer)
    infos = {d.name: d for d in scorer.dimensions}
    result = calibrate(scored, infos=infos, max_false_reject=max_false_reject)

    def fit(train: list[ScoredImage]) -> dict[str, float]:
        found = calibrate(train, infos=infos, max_false_reject=max_false_reject)
        return {c.name: c.threshold for c in found}

    held = leave_one_person_out(
        scored,
        fit=fit,  # type: ignore[arg-type]
        directions={d.name: d.direction for d in scorer.dimensions},
        persons={s.name: s.person for s in manifest.sources},
    )
    text = thresholds_yaml(
        result, max_false_reject=max_false_reject, origin=f"{folder} ({len(scored)} images)"
    )
    target = out or folder / "thresholds.yaml"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ImageFunnelError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    console.print(text, markup=False, highlight=False)
    render_heldout(held, console, fitted=f"calibrate (≤ {max_false_reject:.0%} clean rejected per dimension)")
    console.print(f"wrote {target}")


def _scorer(use_case: str, thresholds: dict[str, float] | None) -> Scorer:
    from imagefunnel.bench.scoring import eval_scorer  # one definition of "the dimensions of a use case"

    return eval_scorer(use_case, thresholds)


def bench_scoring_cmd(
    images: Annotated[int, typer.Option(help="1 MP images per throughput run")] = 40,
    workers: Annotated[int | None, typer.Option(help="scoring threads (default: one per core)")] = None,
    use_case: UseCase = "headshot",
    quality: Annotated[bool, typer.Option(help="also evaluate a generated dev set")] = True,
    seed: Annotated[int, typer.Option(help="dev set seed")] = 0,
) -> None:
    """Scoring throughput at 1 MP (tier 1, full cascade) and dev-set quality against the targets."""
    from imagefunnel.bench.scoring import run_scoring_bench, summary_lines
    from imagefunnel.evaluation import DevSetConfig

    result = run_scoring_bench(
        images=images, workers=workers, use_case=use_case, quality=quality, devset=DevSetConfig(seed=seed)
    )
    for line in summary_lines(result):
        console.print(line, markup=False, highlight=False)
    if result.report is not None:
        render_report(result.report, console)
