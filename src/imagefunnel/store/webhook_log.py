"""Webhook endpoints and the delivery log: one row per (message, endpoint), retried until it lands.

Queuing a message writes a delivery row per subscribed endpoint, so a crash between the event and
the HTTP call loses nothing: the dispatcher picks up due rows after a restart. Several processes
may dispatch from one database: a due row is taken by pushing its ``next_attempt_at`` forward with
a compare-and-set (a lease), and only the taker sends it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update

from imagefunnel.store.models import utcnow
from imagefunnel.store.repository import Store
from imagefunnel.store.service_models import WebhookDeliveryRow, WebhookRow

__all__ = ["WebhookLog"]


def _subscribed(row: WebhookRow, event_type: str) -> bool:
    events = json.loads(row.events)
    return "*" in events or event_type in events or f"{event_type.partition('.')[0]}.*" in events


class WebhookLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add_endpoint(self, tenant_id: str, *, url: str, secret: str, events: Sequence[str]) -> WebhookRow:
        row = WebhookRow(
            id=uuid.uuid4().hex, tenant_id=tenant_id, url=url, secret=secret, events=json.dumps(list(events))
        )
        with self._store.session() as s:
            s.add(row)
        return row

    def endpoints(self, tenant_id: str) -> list[WebhookRow]:
        with self._store.session() as s:
            return list(
                s.scalars(
                    select(WebhookRow)
                    .where(WebhookRow.tenant_id == tenant_id, WebhookRow.disabled_at.is_(None))
                    .order_by(WebhookRow.created_at)
                )
            )

    def disable(self, tenant_id: str, webhook_id: str) -> bool:
        with self._store.session() as s:
            done = s.execute(
                update(WebhookRow)
                .where(WebhookRow.id == webhook_id, WebhookRow.tenant_id == tenant_id)
                .values(disabled_at=utcnow())
            )
            return getattr(done, "rowcount", 0) == 1

    def enqueue(
        self,
        tenant_id: str,
        event_type: str,
        payload: dict[str, object],
        *,
        job_id: str | None = None,
        evaluation_id: str | None = None,
    ) -> int:
        """A delivery per endpoint of the tenant subscribed to ``event_type``; how many."""
        rows = self.deliveries_for(tenant_id, event_type, payload, job_id=job_id, evaluation_id=evaluation_id)
        if rows:
            with self._store.session() as s:
                s.add_all(rows)
        return len(rows)

    def deliveries_for(
        self,
        tenant_id: str,
        event_type: str,
        payload: dict[str, object],
        *,
        job_id: str | None = None,
        evaluation_id: str | None = None,
    ) -> list[WebhookDeliveryRow]:
        """The rows :meth:`enqueue` would add, not yet added: for a caller that must commit them in
        the same transaction as the change they announce (nothing announced that did not happen, and
        nothing happened that a crash leaves unannounced)."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        return [
            WebhookDeliveryRow(
                webhook_id=hook.id,
                tenant_id=tenant_id,
                job_id=job_id,
                evaluation_id=evaluation_id,
                event_type=event_type,
                msg_id=f"msg_{uuid.uuid4().hex}",
                payload=body,
                status="pending",
                attempts=0,
                next_attempt_at=utcnow(),
            )
            for hook in self.endpoints(tenant_id)
            if _subscribed(hook, event_type)
        ]

    def take_due(
        self, *, limit: int, lease_s: float, now: datetime | None = None
    ) -> list[tuple[WebhookDeliveryRow, WebhookRow]]:
        """Due pending deliveries with their endpoint, each leased for ``lease_s`` to this caller."""
        now = now or utcnow()
        with self._store.session() as s:
            due = list(
                s.scalars(
                    select(WebhookDeliveryRow)
                    .where(WebhookDeliveryRow.status == "pending", WebhookDeliveryRow.next_attempt_at <= now)
                    .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                    .limit(limit)
                )
            )
            taken: list[tuple[WebhookDeliveryRow, WebhookRow]] = []
            for row in due:
                leased = s.execute(
                    update(WebhookDeliveryRow)
                    .where(
                        WebhookDeliveryRow.id == row.id,
                        WebhookDeliveryRow.next_attempt_at == row.next_attempt_at,
                        WebhookDeliveryRow.status == "pending",
                    )
                    .values(next_attempt_at=now + timedelta(seconds=lease_s))
                )
                hook = s.get(WebhookRow, row.webhook_id)
                if getattr(leased, "rowcount", 0) == 1 and hook is not None:
                    taken.append((row, hook))
            return taken

    def record_attempt(
        self,
        delivery_id: int,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """After one attempt: delivered, or retry at ``retry_at``, or (None) given up as failed."""
        values: dict[str, object] = {
            "attempts": WebhookDeliveryRow.attempts + 1,
            "last_status": status_code,
            "last_error": error,
        }
        if delivered:
            values.update(status="delivered", delivered_at=utcnow())
        elif retry_at is None:
            values.update(status="failed")
        else:
            values.update(next_attempt_at=retry_at)
        with self._store.session() as s:
            s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id).values(**values))

    def deliveries(
        self, tenant_id: str, *, job_id: str | None = None, evaluation_id: str | None = None
    ) -> list[WebhookDeliveryRow]:
        where = [WebhookDeliveryRow.tenant_id == tenant_id]
        if job_id is not None:
            where.append(WebhookDeliveryRow.job_id == job_id)
        if evaluation_id is not None:
            where.append(WebhookDeliveryRow.evaluation_id == evaluation_id)
        with self._store.session() as s:
            return list(s.scalars(select(WebhookDeliveryRow).where(*where).order_by(WebhookDeliveryRow.id)))
