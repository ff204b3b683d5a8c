"""Did the quote hold? A job's quote kept with it, and held up against what the job did.

The quote a run starts from (:class:`QuoteRecord`) is written next to the job's store, one file per
job, before anything is bought, so ``imagefunnel resume`` finds it again. When the job ends,
:func:`check_quote` puts the quoted spend, wall time and candidates (expected and p95) and
P(deliver) next to the actual ones, says in plain words where the actual went past the quoted p95,
and whether the run kept to the quoted plan (the providers it would use) or had to re-plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from imagefunnel.forecast import JobQuote, chance, usd
from imagefunnel.funnel.result import JobResult

__all__ = [
    "QUOTES_DIR",
    "Figure",
    "QuoteCheck",
    "QuoteRecord",
    "ResultsFile",
    "check_quote",
    "load_record",
    "record_path",
    "replanned",
    "save_record",
    "wall_counts",
]

QUOTES_DIR = "quotes"
# A provider the quote sends at least _IN_PLAN of the requests is part of its plan; one it
# sends _MAIN or more and that the run never tried is a plan the run did not keep.
_IN_PLAN = 0.005
_MAIN = 0.25
# A provider outside the plan that took less than this share of the attempts was a fallback for a
# few failed requests, not a new plan: said, but not called a change.
_FALLBACK = 0.10
# Floats summed in a different order: this close to the p95 is at it, not above it.
_EPS = 1e-9


class QuoteRecord(BaseModel):
    """The quote kept with a job: the one it is held to, and the re-quote when it had to re-plan."""

    model_config = ConfigDict(frozen=True)

    quote: JobQuote
    source: Literal["run", "given"]  # quoted as the run started, or given to it (``run --quote``)
    requote: JobQuote | None = None  # quoted as the run started, when a given quote's plan was gone
    unavailable: list[str] = Field(default_factory=list)  # quoted providers that could not quote then


class Figure(BaseModel):
    """One figure of the quote next to what the job did."""

    model_config = ConfigDict(frozen=True)

    quoted_expected: float
    quoted_p95: float
    actual: float
    above_p95: bool


class QuoteCheck(BaseModel):
    """Quoted vs actual: spend, wall time, candidates and delivery, the plan, and every broken promise."""

    model_config = ConfigDict(frozen=True)

    source: Literal["run", "given"]
    p_deliver: float
    delivered_all: bool
    spend_usd: Figure
    wall_s: Figure
    candidates: Figure
    wall_note: str  # what the actual wall time counts
    quoted_providers: list[str]  # the quoted plan: providers with a share of the requests, largest first
    used_providers: list[str]  # providers the job made attempts at
    plan_changed: bool  # re-planned, or left the plan for more than a few fallbacks
    plan_notes: list[str]  # every departure from the quoted plan, in words
    broken: list[str]  # where the actual went past the quoted p95 (or K was not delivered), in words
    quote: JobQuote
    requote: JobQuote | None = None


class ResultsFile(JobResult):
    """``results.json``: the job's result, and its quote held up against it (absent: not quoted)."""

    quote: QuoteCheck | None = None


def record_path(out_dir: Path, job_id: str) -> Path:
    return out_dir / QUOTES_DIR / f"{job_id}.json"


def save_record(out_dir: Path, job_id: str, record: QuoteRecord) -> Path:
    path = record_path(out_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return path


def load_record(out_dir: Path, job_id: str) -> QuoteRecord | None:
    """The quote a job was started with, or ``None`` for a job run without one."""
    path = record_path(out_dir, job_id)
    if not path.is_file():
        return None
    return QuoteRecord.model_validate_json(path.read_text(encoding="utf-8"))


def replanned(given: JobQuote, fresh: JobQuote | None) -> list[str]:
    """The providers of ``given``'s plan that ``fresh`` (quoted now) could not consider: down,
    unhealthy or no longer quoting. Every one of them when nothing could be quoted now."""
    now = set() if fresh is None else {p.provider for p in fresh.providers}
    return [p.provider for p in given.providers if p.share >= _IN_PLAN and p.provider not in now]


def _figure(expected: float, p95: float, actual: float) -> Figure:
    return Figure(quoted_expected=expected, quoted_p95=p95, actual=actual, above_p95=actual > p95 + _EPS)


def _plan_notes(record: QuoteRecord, result: JobResult) -> tuple[list[str], list[str], list[str], bool]:
    """The quoted plan, the providers used, how the run departed from the plan, and whether that
    departure changed the plan (more than a fallback for a few failed requests)."""
    quote = record.quote
    planned = [p for p in sorted(quote.providers, key=lambda p: -p.share) if p.share >= _IN_PLAN]
    attempts = {p.provider: p.attempts for p in result.providers if p.attempts}
    total = sum(attempts.values())
    notes: list[str] = []
    if record.unavailable:
        again = record.requote
        figures = (
            f"; re-quoted: expected {usd(again.expected_spend_usd)}, p95 {usd(again.spend_p95_usd)}, "
            f"P(deliver {again.deliver}) {chance(again.p_deliver)}"
            if again is not None
            else "; nothing could be quoted then"
        )
        notes.append(
            f"re-planned at the start: {', '.join(record.unavailable)} of the quoted plan "
            f"could not be quoted when the run started{figures}"
        )
    changed = bool(record.unavailable)
    names = {p.provider for p in planned}
    for name, n in sorted(attempts.items(), key=lambda kv: -kv[1]):
        if name not in names:
            minor = n < _FALLBACK * total
            changed |= not minor
            tail = " (a fallback)" if minor else ""
            notes.append(f"{name} was not in the quoted plan and took {n} of {total} attempts{tail}")
    for p in planned:
        if p.share >= _MAIN and p.provider not in attempts:
            changed = True
            notes.append(f"{p.provider} was quoted {p.share:.0%} of the requests and got none")
    return [p.provider for p in planned], sorted(attempts, key=lambda n: -attempts[n]), notes, changed


def wall_counts(quote: JobQuote) -> str:
    """What a quote's wall time counts, in words (a quote made before scoring time was counted: none)."""
    if quote.score_s > 0:
        return f"provider latency, box queues and {quote.score_s:.2f}s to score each candidate"
    return "provider latency and box queues, not scoring time"


def check_quote(record: QuoteRecord, result: JobResult, *, wall_s: float, wall_note: str) -> QuoteCheck:
    """Hold ``record``'s quote up against ``result`` (and the job's ``wall_s``)."""
    q = record.quote
    spend = _figure(q.expected_spend_usd, q.spend_p95_usd, result.spent_usd)
    wall = _figure(q.expected_wall_s, q.wall_p95_s, wall_s)
    candidates = _figure(q.expected_candidates, q.candidates_p95, float(result.candidates_generated))
    broken: list[str] = []
    if spend.above_p95:
        broken.append(
            f"spend {usd(spend.actual)} is above the quoted p95 of {usd(spend.quoted_p95)} "
            f"(expected {usd(spend.quoted_expected)})"
        )
    if candidates.above_p95:
        broken.append(
            f"{result.candidates_generated} candidates is above the quoted p95 of "
            f"{candidates.quoted_p95:.0f} (expected {candidates.quoted_expected:.1f})"
        )
    if wall.above_p95:
        broken.append(
            f"wall time {wall.actual:.1f}s is above the quoted p95 of {wall.quoted_p95:.1f}s "
            f"(expected {wall.quoted_expected:.1f}s; the quote counts {wall_counts(q)})"
        )
    delivered_all = result.delivered >= result.asked
    if not delivered_all:
        broken.append(
            f"delivered {result.delivered} of {result.asked}; the quote gave "
            f"P(deliver {q.deliver}) = {chance(q.p_deliver)}"
        )
    quoted, used, notes, changed = _plan_notes(record, result)
    return QuoteCheck(
        source=record.source,
        p_deliver=q.p_deliver,
        delivered_all=delivered_all,
        spend_usd=spend,
        wall_s=wall,
        candidates=candidates,
        wall_note=wall_note,
        quoted_providers=quoted,
        used_providers=used,
        plan_changed=changed,
        plan_notes=notes,
        broken=broken,
        quote=q,
        requote=record.requote,
    )
