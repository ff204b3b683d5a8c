"""Scoring images a tenant brings: the same :class:`~imagefunnel.scoring.Scorer` the funnel uses.

Scorers are built once per (use case, spec) and reused: building one checks the spec and may load
face models, which must not happen per request. Scoring runs on a thread (OpenCV releases the GIL),
never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.errors import ImageFunnelError
from imagefunnel.jobs import build_scorer
from imagefunnel.scoring import Scorer, Verdict
from imagefunnel.scoring.identity import load_references
from imagefunnel.scoring.registry import ScoringContext
from imagefunnel.service.evaluation_references import resolve_stored
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore
from imagefunnel.store.evaluations import EvaluationStore, ScoredImageResult
from imagefunnel.store.service_models import WebhookDeliveryRow
from imagefunnel.store.uploads import Uploads
from imagefunnel.store.webhook_log import WebhookLog

__all__ = ["EvaluationRunner", "ScorerCache", "verdict_json"]

log = logging.getLogger(__name__)
TOP_ISSUES = 3


class ScorerCache:
    """Least-recently-used scorers by (use case, canonical spec, reference photos).

    A spec's uploads arrive resolved to their blobs, which are named by their content, so the same
    reference photos find the same scorer (and their faces, analysed once) whoever sends them."""

    def __init__(self, *, size: int = 16) -> None:
        self._size = size
        self._scorers: OrderedDict[str, Scorer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, *, use_case: str, spec: JobSpec | None, references: Sequence[Path] = ()) -> Scorer:
        """The scorer of ``spec`` (its own references), or of ``use_case`` judged against
        ``references`` when there is no spec."""
        text = spec.model_dump_json() if spec is not None else "\n".join(map(str, references))
        key = hashlib.sha256(f"{use_case}\n{text}".encode()).hexdigest()
        with self._lock:
            found = self._scorers.get(key)
            if found is not None:
                self._scorers.move_to_end(key)
                return found
        if spec is not None:
            scorer = build_scorer(spec.model_copy(update={"score_all": True}))
        elif references:
            context = ScoringContext(references=load_references(references))
            scorer = Scorer(use_case=use_case, score_all=True, context=context)
        else:
            scorer = Scorer(use_case=use_case, score_all=True)
        with self._lock:
            self._scorers[key] = scorer
            while len(self._scorers) > self._size:
                self._scorers.popitem(last=False)
        return scorer


def verdict_json(name: str, verdict: Verdict, scorer: Scorer) -> dict[str, object]:
    """One image's verdict as the API shows it: every dimension, what was skipped and why, top issues."""
    failed = sorted(verdict.failed, key=lambda s: s.tier)
    return {
        "name": name,
        "passed": verdict.passed,
        "dimensions": [
            {
                "name": s.name,
                "tier": s.tier,
                "value": s.value,
                "threshold": s.threshold,
                "direction": s.direction.value,
                "passed": s.passed,
                "reason": s.reason,
            }
            for s in verdict.scores
        ],
        "skipped": [{"name": n, "reason": scorer.skip_reason(n)} for n in verdict.skipped],
        "top_issues": [s.reason for s in failed[:TOP_ISSUES]],
    }


def score_all(scorer: Scorer, images: Sequence[tuple[str, bytes]]) -> list[ScoredImageResult]:
    results = []
    for position, (name, data) in enumerate(images):
        verdict = scorer.score_bytes(data)
        results.append(ScoredImageResult(position, verdict.passed, verdict_json(name, verdict, scorer)))
    return results


@dataclass(frozen=True, slots=True)
class EvaluationRunner:
    """Scores queued (batch) evaluations; announces each result to the tenant's webhooks."""

    evaluations: EvaluationStore
    blobs: BlobStore
    uploads: Uploads
    scorers: ScorerCache
    webhooks: WebhookLog
    worker_id: str

    async def run(self, stop: asyncio.Event, *, poll_s: float) -> None:
        while not stop.is_set():
            if await self.run_one():
                continue
            try:
                async with asyncio.timeout(poll_s):
                    await stop.wait()
            except TimeoutError:
                pass

    async def run_one(self) -> bool:
        row = await asyncio.to_thread(self.evaluations.claim, self.worker_id)
        if row is None:
            return False
        await asyncio.to_thread(self._score, row.id, row.tenant_id, row.use_case, row.spec_json)
        return True

    def _score(self, evaluation_id: str, tenant_id: str, use_case: str, spec_json: str | None) -> None:
        # The result and its webhook deliveries are committed together: a poller that sees the
        # evaluation done finds its announcement queued, and a crash between the two loses neither.
        def announce(status: str, passed: int) -> list[WebhookDeliveryRow]:
            payload: dict[str, object] = {
                "type": "evaluation.completed",
                "evaluation_id": evaluation_id,
                "status": status,
                "passed": passed,
            }
            return self.webhooks.deliveries_for(
                tenant_id, "evaluation.completed", payload, evaluation_id=evaluation_id
            )

        try:
            # Its reference uploads, as the blobs holding them (still the tenant's, still there).
            inputs = resolve_stored(spec_json, tenant_id, self.uploads, self.blobs)
            scorer = self.scorers.get(use_case=use_case, spec=inputs.spec, references=inputs.references)
            images = [
                (i.filename, self.blobs.get(i.blob_sha256)) for i in self.evaluations.images(evaluation_id)
            ]
            results = score_all(scorer, images)
        except ImageFunnelError as exc:
            log.warning("evaluation %s failed: %s", evaluation_id, exc)
            self.evaluations.fail(evaluation_id, str(exc), announce=announce("failed", 0))
            return
        self.evaluations.record(
            evaluation_id, results, announce=announce("done", sum(r.passed for r in results))
        )
