"""A self-contained HTML report of one job: thumbnails inline, every verdict explained."""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
from PIL import Image, UnidentifiedImageError

from imagefunnel.errors import ImageError, StoreError
from imagefunnel.forecast import chance, usd
from imagefunnel.funnel.result import CandidateResult, JobResult, ProviderSummary
from imagefunnel.imaging import decode_image
from imagefunnel.quote_check import QuoteCheck
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore
from imagefunnel.store.models import LedgerRow

THUMB_PX = 224
# Money is summed in floats: a charge this close to its quote is equal to it, not above it.
_CENT_FRACTION = 1e-9


@dataclass(frozen=True, slots=True)
class FailureKind:
    """Failed attempts of one provider that ended the same way, counted."""

    provider: str
    error_type: str
    error: str
    count: int


def _thumbnail(data: bytes) -> str | None:
    try:
        rgb = decode_image(data).rgb
    except ImageError:
        return None
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_PX, THUMB_PX))
    out = io.BytesIO()
    try:
        image.save(out, format="JPEG", quality=80)
    except (OSError, UnidentifiedImageError):  # pragma: no cover - decoded RGB always encodes
        return None
    return base64.b64encode(out.getvalue()).decode("ascii")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("imagefunnel.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def _failure_kinds(ledger: Sequence[LedgerRow]) -> list[FailureKind]:
    counts = Counter(
        (row.provider, row.error_type or "error", row.error or "no message recorded")
        for row in ledger
        if row.status == "failed"
    )
    return [FailureKind(p, kind, error, n) for (p, kind, error), n in counts.most_common()]


def _over(charged: float, limit: float) -> bool:
    return charged > limit + _CENT_FRACTION


def over_quote(cand: CandidateResult) -> bool:
    """Charged above its quote. A result written before quotes were recorded has no quote to exceed."""
    return "quoted_usd" in cand.model_fields_set and _over(cand.charged_usd, cand.quoted_usd)


def _provider_over_quote(summary: ProviderSummary) -> bool:
    return _over(summary.charged_usd, summary.quoted_usd)


def render_report(
    result: JobResult,
    blobs: BlobStore,
    *,
    spec: JobSpec | None = None,
    ledger: Sequence[LedgerRow] | None = None,
    quote: QuoteCheck | None = None,
) -> str:
    """The report page. ``spec`` adds what was asked (and the budget to check the spend against);
    ``ledger`` (the job's attempts) adds how failed attempts failed; ``quote`` the job's quote
    against what it did."""
    thumbs: dict[int, str | None] = {}
    for cand in result.candidates:
        try:
            thumbs[cand.id] = _thumbnail(blobs.get(cand.blob_sha256))
        except StoreError:
            thumbs[cand.id] = None
    rejections = Counter(d.dimension for c in result.candidates for d in c.dimensions if not d.passed)
    delivered = sorted((c for c in result.candidates if c.delivered), key=lambda c: c.rank or 0)
    return (
        _environment()
        .get_template("job.html.j2")
        .render(
            r=result,
            spec=spec,
            over_budget=spec is not None and _over(result.spent_usd, spec.budget_usd),
            failed=result.delivered == 0,
            failures=_failure_kinds(ledger or ()),
            ledger_known=ledger is not None,
            over_quote=over_quote,
            above_quote=sum(over_quote(c) for c in result.candidates),
            provider_over_quote=_provider_over_quote,
            thumbs=thumbs,
            quote=quote,
            usd=usd,
            chance=chance,
            rejections=rejections.most_common(),
            delivered=delivered,
            spare=[c for c in result.candidates if c.passed and not c.delivered],
            rejected=[c for c in result.candidates if not c.passed],
        )
    )


def write_report(
    result: JobResult,
    blobs: BlobStore,
    path: Path,
    *,
    spec: JobSpec | None = None,
    ledger: Sequence[LedgerRow] | None = None,
    quote: QuoteCheck | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, blobs, spec=spec, ledger=ledger, quote=quote), encoding="utf-8")
    return path
