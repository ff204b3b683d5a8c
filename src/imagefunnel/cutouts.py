"""Background removal at scale: one funnel job per photo, routed between self-hosted and API removers.

Each photo is its own job (deliver one cutout that passes the ``background_removal`` tier), run by the
product's own :class:`~imagefunnel.funnel.Funnel` and :class:`~imagefunnel.routing.Router`. The router
is shared by all jobs, so the pass rates it learns from the scorer's verdicts (per provider) carry
from photo to photo: it ranks by expected cost per *accepted* cutout, and a cold, saturated or failing
self-hosted worker answers with a retry-after that sends the request to an API meanwhile. What the
``imagefunnel cutout`` command and ``imagefunnel bench bg-removal`` both run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from imagefunnel.funnel import Funnel
from imagefunnel.providers.base import Provider
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL
from imagefunnel.routing import Router
from imagefunnel.scoring import Scorer
from imagefunnel.scoring.jobcontext import job_context
from imagefunnel.spec import JobSpec, UseCase
from imagefunnel.store import BlobStore, Store

__all__ = ["CutoutOutcome", "cutout_spec", "run_cutouts"]


@dataclass(frozen=True, slots=True)
class CutoutOutcome:
    """How one photo's job ended."""

    source: Path
    job_id: str
    status: str  # delivered | partial | failed
    reason: str
    provider: str | None  # who made the delivered cutout
    provider_request_id: str | None
    image: bytes | None  # the delivered RGBA PNG
    spent_usd: float
    seconds: float
    candidates: int


def cutout_spec(
    source: Path, *, max_candidates: int = 4, budget_usd: float = 1.0, deadline_s: float = 120.0
) -> JobSpec:
    return JobSpec(
        name=f"cutout {source.name}",
        use_case=UseCase.BACKGROUND_REMOVAL,
        model=BACKGROUND_REMOVAL_MODEL,
        source=source,
        deliver=1,
        max_candidates=max_candidates,
        concurrency=1,
        budget_usd=budget_usd,
        deadline_s=deadline_s,
    )


async def run_cutouts(
    photos: Sequence[Path],
    providers: Sequence[Provider],
    *,
    store: Store,
    blobs: BlobStore,
    concurrency: int = 4,
    router: Router | None = None,
    on_done: Callable[[CutoutOutcome], None] | None = None,
    max_candidates: int = 4,
) -> list[CutoutOutcome]:
    """Cut out every photo (``concurrency`` jobs at a time); outcomes in the order of ``photos``."""
    router = router or Router(providers, ledger=store)
    gate = asyncio.Semaphore(concurrency)
    with ThreadPoolExecutor(2, thread_name_prefix="cutout-score") as executor:

        async def one(photo: Path) -> CutoutOutcome:
            async with gate:
                spec = cutout_spec(photo, max_candidates=max_candidates)
                scorer = Scorer(use_case=spec.use_case, context=job_context(spec))
                funnel = Funnel(router=router, scorer=scorer, store=store, blobs=blobs, executor=executor)
                started = time.perf_counter()
                outcome = await funnel.run(spec)
                result = _outcome(photo, outcome.job_id, outcome.status, outcome.stop_reason, store, blobs)
                result = _with_seconds(result, time.perf_counter() - started)
            if on_done is not None:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(photo) for photo in photos)))


def _outcome(
    photo: Path, job_id: str, status: str, reason: str, store: Store, blobs: BlobStore
) -> CutoutOutcome:
    rows = store.candidates(job_id)
    delivered = [row for row in rows if row.delivered]
    best = delivered[0] if delivered else None
    return CutoutOutcome(
        source=photo,
        job_id=job_id,
        status=status,
        reason=reason,
        provider=best.provider if best is not None else None,
        provider_request_id=best.provider_request_id if best is not None else None,
        image=blobs.get(best.blob_sha256) if best is not None else None,
        spent_usd=store.spent_usd(job_id),
        seconds=0.0,
        candidates=len(rows),
    )


def _with_seconds(outcome: CutoutOutcome, seconds: float) -> CutoutOutcome:
    return replace(outcome, seconds=seconds)
