"""``imagefunnel score``: per-dimension verdicts for images you bring."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imagefunnel.errors import ImageFunnelError
from imagefunnel.scoring import Scorer, Verdict
from imagefunnel.scoring.jobcontext import job_context
from imagefunnel.spec import JobSpec, load_spec

MAX_FILE_BYTES = 50_000_000


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageFunnelError(f"{path}: larger than {MAX_FILE_BYTES // 1_000_000} MB")
        return path.read_bytes()
    except OSError as exc:
        raise ImageFunnelError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _verdict_table(path: Path, verdict: Verdict, scorer: Scorer) -> Table:
    status = "[green]PASS[/]" if verdict.passed else "[red]FAIL[/]"
    table = Table(title=f"{path.name}  {status}", title_justify="left")
    for col in ("dimension", "tier", "value", "threshold", "verdict", "reason"):
        table.add_column(col)
    for s in verdict.scores:
        value = "—" if s.value is None else f"{s.value:.4g}"
        threshold = "—" if s.threshold is None else f"{s.threshold:.4g}"
        verdict_text = "[green]pass[/]" if s.passed else "[red]FAIL[/]"
        table.add_row(s.name, str(s.tier), value, threshold, verdict_text, s.reason)
    for name in verdict.skipped:
        table.add_row(name, "", "", "", "[dim]skipped[/]", scorer.skip_reason(name))
    return table


def _as_dict(path: Path, verdict: Verdict) -> dict[str, object]:
    return {
        "image": str(path),
        "passed": verdict.passed,
        "dimensions": [
            {
                "name": s.name,
                "tier": s.tier,
                "value": s.value,
                "threshold": s.threshold,
                "passed": s.passed,
                "reason": s.reason,
            }
            for s in verdict.scores
        ],
        "skipped": list(verdict.skipped),
    }


def score_images(
    console: Console,
    *,
    images: Sequence[Path],
    spec_path: Path | None,
    as_json: bool,
    use_case: str | None = None,
) -> bool:
    spec: JobSpec | None = load_spec(spec_path) if spec_path else None
    scorer = Scorer(
        thresholds=spec.thresholds if spec else None,
        score_all=True,
        rules=spec.rules if spec else (),
        use_case=use_case or (spec.use_case if spec else None),
        context=job_context(spec) if spec else None,  # references, source (a product photo), brief
    )
    results = [(path, scorer.score_bytes(_read(path))) for path in images]
    if as_json:
        console.print_json(json.dumps([_as_dict(p, v) for p, v in results]))
    else:
        for path, verdict in results:
            console.print(_verdict_table(path, verdict, scorer))
    return all(v.passed for _, v in results)
