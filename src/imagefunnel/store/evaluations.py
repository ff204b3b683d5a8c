"""Evaluations: images a tenant brought, their per-dimension results, and people's feedback on them.

A small evaluation is scored in the request and stored ``done``; a batch is stored ``queued`` and
claimed by a worker with a compare-and-set, so several processes can share the table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update

from imagefunnel.store.models import utcnow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import EvaluationFeedbackRow, EvaluationImageRow, EvaluationRow

__all__ = ["EvaluationStore", "FeedbackEntry", "NewImage", "ScoredImageResult"]


@dataclass(frozen=True, slots=True)
class NewImage:
    filename: str
    blob_sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ScoredImageResult:
    position: int
    passed: bool
    result: dict[str, object]  # dimensions, skipped, top issues (JSON-ready)


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """The newest feedback on one image, with the image it is about."""

    image: EvaluationImageRow
    accepted: bool
    dimensions: tuple[str, ...]
    note: str
    use_case: str


def _result_text(item: ScoredImageResult) -> str:
    return json.dumps(item.result, separators=(",", ":"))


class EvaluationStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(
        self,
        tenant_id: str,
        *,
        use_case: str,
        spec_json: str | None,
        images: Sequence[NewImage],
        queued: bool,
        results: Sequence[ScoredImageResult] | None = None,
    ) -> str:
        """A new evaluation; with ``results`` (one per image, by position) it is stored ``done`` in
        the same transaction, so an evaluation scored in the request costs one commit."""
        evaluation_id = uuid.uuid4().hex
        by_position = {r.position: r for r in results} if results is not None else {}
        done = results is not None and not queued
        with self._store.session() as s:
            s.add(
                EvaluationRow(
                    id=evaluation_id,
                    tenant_id=tenant_id,
                    status="done" if done else "queued" if queued else "running",
                    use_case=use_case,
                    spec_json=spec_json,
                    images=len(images),
                    passed=sum(r.passed for r in by_position.values()) if done else 0,
                    finished_at=utcnow() if done else None,
                )
            )
            s.flush()
            s.add_all(
                EvaluationImageRow(
                    evaluation_id=evaluation_id,
                    position=i,
                    filename=image.filename,
                    blob_sha256=image.blob_sha256,
                    content_type=image.content_type,
                    passed=by_position[i].passed if done else None,
                    result=_result_text(by_position[i]) if done else None,
                )
                for i, image in enumerate(images)
            )
        return evaluation_id

    def record(
        self,
        evaluation_id: str,
        results: Sequence[ScoredImageResult],
        *,
        announce: Sequence[object] = (),
    ) -> None:
        """Store every image's result and close the evaluation as ``done``; ``announce`` (rows such
        as webhook deliveries) is added in the same transaction."""
        with self._store.session() as s:
            s.add_all(announce)
            for item in results:
                s.execute(
                    update(EvaluationImageRow)
                    .where(
                        EvaluationImageRow.evaluation_id == evaluation_id,
                        EvaluationImageRow.position == item.position,
                    )
                    .values(passed=item.passed, result=_result_text(item))
                )
            s.execute(
                update(EvaluationRow)
                .where(EvaluationRow.id == evaluation_id)
                .values(status="done", passed=sum(r.passed for r in results), finished_at=utcnow())
            )

    def fail(self, evaluation_id: str, error: str, *, announce: Sequence[object] = ()) -> None:
        """Close the evaluation as ``failed``; ``announce`` is added in the same transaction."""
        with self._store.session() as s:
            s.add_all(announce)
            s.execute(
                update(EvaluationRow)
                .where(EvaluationRow.id == evaluation_id)
                .values(status="failed", error=error, finished_at=utcnow())
            )

    def claim(self, worker_id: str) -> EvaluationRow | None:
        """Take the oldest queued evaluation for scoring, or None."""
        for _ in range(8):
            with self._store.session() as s:
                found = s.scalar(
                    select(EvaluationRow.id)
                    .where(EvaluationRow.status == "queued")
                    .order_by(EvaluationRow.created_at)
                    .limit(1)
                )
                if found is None:
                    return None
                taken = s.execute(
                    update(EvaluationRow)
                    .where(EvaluationRow.id == found, EvaluationRow.status == "queued")
                    .values(status="running", claimed_by=worker_id)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    return s.get(EvaluationRow, found)
        return None

    def requeue(self, owners: Callable[[str], bool]) -> int:
        """Put back in the queue evaluations being scored by a worker ``owners`` says is gone."""
        with self._store.session() as s:
            held = s.execute(
                select(EvaluationRow.id, EvaluationRow.claimed_by).where(
                    EvaluationRow.status == "running", EvaluationRow.claimed_by.is_not(None)
                )
            ).all()
            dead = [eid for eid, owner in held if owner and owners(owner)]
            if dead:
                s.execute(
                    update(EvaluationRow)
                    .where(EvaluationRow.id.in_(dead), EvaluationRow.status == "running")
                    .values(status="queued", claimed_by=None)
                )
            return len(dead)

    def get(self, tenant_id: str, evaluation_id: str) -> EvaluationRow | None:
        with self._store.session() as s:
            row = s.get(EvaluationRow, evaluation_id)
            return row if row is not None and row.tenant_id == tenant_id else None

    def owner(self, evaluation_id: str) -> str | None:
        with self._store.session() as s:
            row = s.get(EvaluationRow, evaluation_id)
            return row.tenant_id if row is not None else None

    def page(self, tenant_id: str, *, limit: int = 50, offset: int = 0) -> list[EvaluationRow]:
        with self._store.session() as s:
            return list(
                s.scalars(
                    select(EvaluationRow)
                    .where(EvaluationRow.tenant_id == tenant_id)
                    .order_by(EvaluationRow.created_at.desc(), EvaluationRow.id)
                    .limit(limit)
                    .offset(offset)
                )
            )

    def images(self, evaluation_id: str) -> list[EvaluationImageRow]:
        with self._store.session() as s:
            return list(
                s.scalars(
                    select(EvaluationImageRow)
                    .where(EvaluationImageRow.evaluation_id == evaluation_id)
                    .order_by(EvaluationImageRow.position)
                )
            )

    def add_feedback(
        self, evaluation_id: str, *, position: int, accepted: bool, dimensions: Sequence[str], note: str
    ) -> bool:
        """Record a person's verdict on image ``position``; False if the evaluation has no such image."""
        with self._store.session() as s:
            image = s.scalar(
                select(EvaluationImageRow).where(
                    EvaluationImageRow.evaluation_id == evaluation_id,
                    EvaluationImageRow.position == position,
                )
            )
            if image is None:
                return False
            s.add(
                EvaluationFeedbackRow(
                    evaluation_id=evaluation_id,
                    image_id=image.id,
                    accepted=accepted,
                    dimensions=json.dumps(list(dimensions)),
                    note=note,
                )
            )
            return True

    def feedback(
        self, *, tenant_id: str | None = None, evaluation_id: str | None = None
    ) -> list[FeedbackEntry]:
        """The newest feedback per image, of one evaluation, one tenant, or everyone."""
        query = (
            select(EvaluationFeedbackRow, EvaluationImageRow, EvaluationRow.use_case)
            .join(EvaluationImageRow, EvaluationImageRow.id == EvaluationFeedbackRow.image_id)
            .join(EvaluationRow, EvaluationRow.id == EvaluationFeedbackRow.evaluation_id)
            .order_by(EvaluationFeedbackRow.id)
        )
        if tenant_id is not None:
            query = query.where(EvaluationRow.tenant_id == tenant_id)
        if evaluation_id is not None:
            query = query.where(EvaluationRow.id == evaluation_id)
        newest: dict[int, FeedbackEntry] = {}
        with self._store.session() as s:
            for fb, image, use_case in s.execute(query):
                dims = tuple(str(d) for d in json.loads(fb.dimensions))
                newest[image.id] = FeedbackEntry(image, fb.accepted, dims, fb.note, use_case)
        return list(newest.values())
