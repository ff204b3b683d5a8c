"""``imagefunnel score``: per-dimension verdicts for images you bring.

Paths may be files or folders (their images, sorted; ``recursive`` descends into subfolders).
Every file is read with :func:`~imagefunnel.imaging.read_image_file`, so a named pipe or a device
is refused instead of hanging or reading forever. A file that cannot be read is reported on one line
and the rest are still scored; the exit code then says the input was not all usable.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagefunnel.cli.errors import one_line, print_error
from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.errors import ImageError, SpecError
from imagefunnel.imagefile import file_kind
from imagefunnel.imaging import describe_content, looks_like_image, read_image_file
from imagefunnel.scoring import Scorer, Verdict
from imagefunnel.scoring.jobcontext import job_context
from imagefunnel.spec import JobSpec, UseCase, load_spec

MAX_FILE_BYTES = 50_000_000


@dataclass
class _Inputs:
    """The images to score, with what could not be read and what was left out, in order."""

    images: list[tuple[Path, bytes]] = field(default_factory=list)
    unreadable: int = 0
    skipped: int = 0


def _note(console: Console, message: str) -> None:
    console.print(one_line(message), markup=False, highlight=False, soft_wrap=True)


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or a NUL byte: read_image_file says which
        return None


def _walk(folder: Path, *, recursive: bool, skip: Callable[[Path, str], None]) -> Iterator[Path]:
    """Regular files under ``folder`` in sorted order; symlinked folders are not followed (loops)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        skip(folder, f"cannot list: {exc.strerror or exc}")
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                yield from _walk(path, recursive=True, skip=skip)
            else:
                skip(path, "a folder (pass --recursive to score inside it)")
            continue
        mode = _mode(path)  # follows links: one to a device or a pipe is skipped like the thing itself
        if mode is None or stat.S_ISREG(mode):
            yield path  # (an unreadable one is reported when read)
        elif stat.S_ISDIR(mode):
            skip(path, "a link to a folder (not followed)")
        else:
            skip(path, file_kind(mode))


def _collect(paths: Sequence[Path], *, recursive: bool, err: Console, max_bytes: int) -> _Inputs:
    inputs = _Inputs()

    def unreadable(path: Path, message: object) -> None:
        print_error(err, f"{path}: {message}")
        inputs.unreadable += 1

    def skip(path: Path, why: str) -> None:
        _note(err, f"skipped {path}: {why}")
        inputs.skipped += 1

    for given in paths:
        mode = _mode(given)
        if mode is None or not stat.S_ISDIR(mode):
            try:
                inputs.images.append((given, read_image_file(given, max_bytes=max_bytes)))
            except ImageError as exc:
                unreadable(given, exc)
            continue
        for path in _walk(given, recursive=recursive, skip=skip):
            try:
                data = read_image_file(path, max_bytes=max_bytes)
            except ImageError as exc:
                unreadable(path, exc)
                continue
            if looks_like_image(data):
                inputs.images.append((path, data))
            else:
                skip(path, f"not an image ({describe_content(data)})")
    return inputs


def _use_case(given: str | None, spec: JobSpec | None) -> str | None:
    if given is None:
        return str(spec.use_case) if spec else None
    known = [case.value for case in UseCase]
    if given not in known:
        close = difflib.get_close_matches(given, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SpecError(f"--use-case {given}: not a use case; {hint}choose one of: {', '.join(known)}")
    return given


def checks_line(scorer: Scorer, use_case: str | None, *, source: str) -> str:
    """One line saying which use case's dimensions run, so a generic-only score is never silent."""
    names = [d.name for d in scorer.dimensions]
    if use_case is None:
        others = ", ".join(case.value for case in UseCase if case not in (UseCase.GENERIC, UseCase.HEADSHOT))
        return (
            f"use case: none (generic checks only: {', '.join(names)}); "
            f"pass --use-case headshot for faces (or {others}), or --spec with a job spec"
        )
    by_tier = [
        f"tier {tier}: {', '.join(d.name for d in scorer.dimensions if d.tier == tier)}"
        for tier in sorted({d.tier for d in scorer.dimensions})
    ]
    return f"use case: {use_case} ({source}; {len(names)} dimensions; {'; '.join(by_tier)})"


def _verdict_table(path: Path, verdict: Verdict, scorer: Scorer) -> Table:
    status = "[green]PASS[/]" if verdict.passed else "[red]FAIL[/]"
    table = Table(title=f"{escape(str(path))}  {status}", title_justify="left")
    for col in ("dimension", "tier", "value", "threshold", "verdict", "reason"):
        table.add_column(col)
    for s in verdict.scores:
        value = "—" if s.value is None else f"{s.value:.4g}"
        threshold = "—" if s.threshold is None else f"{s.threshold:.4g}"
        verdict_text = "[green]pass[/]" if s.passed else "[red]FAIL[/]"
        table.add_row(s.name, str(s.tier), value, threshold, verdict_text, escape(s.reason))
    for name in verdict.skipped:
        table.add_row(name, "", "", "", "[dim]skipped[/]", scorer.skip_reason(name))
    return table


def _as_dict(path: Path, verdict: Verdict, *, use_case: str | None, checks: str) -> dict[str, object]:
    return {
        "image": str(path),
        "passed": verdict.passed,
        "use_case": use_case,
        "checks": checks,
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


def _score_all(
    scorer: Scorer, images: Sequence[tuple[Path, bytes]], err: Console
) -> list[tuple[Path, Verdict]]:
    """Every image's verdict, in the order given, scored on the local pool (one image per core: the
    models release the GIL); a bar on a terminal's stderr while more than one is scored."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from imagefunnel.executors.local import local_executor

    verdicts: list[Verdict] = []
    show = err.is_terminal and len(images) > 1
    with (
        local_executor() as pool,
        Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not show,
        ) as progress,
    ):
        task = progress.add_task("scoring", total=len(images))
        for verdict in pool.map(scorer.score_bytes, (data for _, data in images)):
            verdicts.append(verdict)
            progress.advance(task)
    return [(path, verdict) for (path, _), verdict in zip(images, verdicts, strict=True)]


def score_images(
    console: Console,
    *,
    images: Sequence[Path],
    spec_path: Path | None,
    as_json: bool,
    use_case: str | None = None,
    recursive: bool = False,
    err_console: Console | None = None,
) -> ExitCode:
    """Score every image named (or found in the folders named); the exit code to return.

    OK: all passed; PARTIAL: some failed; FAILED: some input could not be read, or nothing was left
    to score. A bad spec or use case raises :class:`SpecError` before anything is read.
    """
    err = err_console or Console(stderr=True)
    spec: JobSpec | None = load_spec(spec_path) if spec_path else None
    case = _use_case(use_case, spec)
    context = job_context(spec) if spec else None  # references, source (a product photo), brief
    inputs = _collect(images, recursive=recursive, err=err, max_bytes=MAX_FILE_BYTES)
    if not inputs.images:
        if not inputs.unreadable:
            left_out = f" ({inputs.skipped} skipped)" if inputs.skipped else ""
            print_error(err, f"nothing to score: no images in {', '.join(map(str, images))}{left_out}")
        return ExitCode.FAILED
    scorer = Scorer(
        thresholds=spec.thresholds if spec else None,
        score_all=True,
        rules=spec.rules if spec else (),
        use_case=case,
        context=context,
    )
    checks = checks_line(scorer, case, source="from --use-case" if use_case else "from the spec")
    results = _score_all(scorer, inputs.images, err)
    if as_json:
        rows = [_as_dict(p, v, use_case=case, checks=checks) for p, v in results]
        console.print_json(json.dumps(rows))
    else:
        _note(console, checks)
        for path, verdict in results:
            console.print(_verdict_table(path, verdict, scorer))
    if inputs.unreadable:
        return ExitCode.FAILED
    return ExitCode.OK if all(v.passed for _, v in results) else ExitCode.PARTIAL
