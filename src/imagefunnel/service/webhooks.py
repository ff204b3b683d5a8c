"""Webhooks, signed the Standard Webhooks way, retried with exponential backoff.

Each message is POSTed with three headers::

    webhook-id:        msg_<hex>             the same on every retry of one message
    webhook-timestamp: <unix seconds>        when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")>

where ``secret`` is the raw bytes behind the endpoint's ``whsec_<base64>`` secret (shown once, when
the endpoint is created). Replay protection is the receiver's, as the standard intends: verify the
signature over the exact body, refuse timestamps more than five minutes from now, and remember the
``webhook-id`` of messages already handled (a retry carries the same id, so it is processed once).
Any official Standard Webhooks library verifies these messages.

A 2xx answer is delivered; anything else (or no answer) is retried after
``backoff_s * 2**(attempt-1)`` seconds (capped), up to ``attempts`` times, then marked failed. Every
attempt's outcome is in the delivery log. Outside development, targets that resolve to loopback,
private, link-local or reserved addresses are refused (the service must not become a way into the
network it runs in).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import httpx

from imagefunnel.errors import StoreError
from imagefunnel.store.models import utcnow
from imagefunnel.store.service_models import WebhookDeliveryRow, WebhookRow
from imagefunnel.store.webhook_log import WebhookLog

__all__ = ["WebhookDispatcher", "check_target", "new_secret", "sign"]

log = logging.getLogger(__name__)
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_target(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` may not receive webhooks, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a webhook URL must be http(s)://host/..."
    if parts.username or parts.password:
        return "a webhook URL must not carry credentials"
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return f"cannot resolve {parts.hostname}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"{parts.hostname} resolves to a non-public address ({address})"
    return None


class WebhookDispatcher:
    """Sends due deliveries from the log; run :meth:`run` as a task, or :meth:`deliver_due` once."""

    def __init__(
        self,
        log_: WebhookLog,
        *,
        attempts: int,
        backoff_s: float,
        backoff_max_s: float,
        timeout_s: float,
        allow_private: bool,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._log = log_
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def retry_delay_s(self, attempts_made: int) -> float:
        """Seconds before the next try after ``attempts_made`` failed ones."""
        return float(min(self._backoff_max_s, self._backoff_s * 2 ** (attempts_made - 1)))

    async def run(self, stop: asyncio.Event, *, poll_s: float) -> None:
        while not stop.is_set():
            try:
                sent = await self.deliver_due()
            except StoreError as exc:  # a store hiccup must not end webhook delivery for good
                log.warning("webhook round failed: %s", exc)
                sent = 0
            if not sent:
                try:
                    async with asyncio.timeout(poll_s):
                        await stop.wait()
                except TimeoutError:
                    pass

    async def deliver_due(self, *, limit: int = 50) -> int:
        """Send every due delivery once; how many were attempted."""
        lease = self._timeout_s * 2 + 5  # longer than an attempt takes, so no one else sends it meanwhile
        due = await asyncio.to_thread(self._log.take_due, limit=limit, lease_s=lease)
        await asyncio.gather(*(self._attempt(row, hook) for row, hook in due))
        return len(due)

    async def _attempt(self, row: WebhookDeliveryRow, hook: WebhookRow) -> None:
        status: int | None = None
        error: str | None = None
        why = await asyncio.to_thread(check_target, hook.url, allow_private=self._allow_private)
        if why is not None:
            error = why
        else:
            stamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": "imagefunnel-webhooks",
                "webhook-id": row.msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(hook.secret, row.msg_id, stamp, row.payload),
            }
            try:
                response = await self._client.post(hook.url, content=row.payload.encode(), headers=headers)
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        delivered = error is None
        made = row.attempts + 1
        retry_at = None
        if not delivered and made < self._attempts:
            retry_at = utcnow() + timedelta(seconds=self.retry_delay_s(made))
        await asyncio.to_thread(
            self._log.record_attempt,
            row.id,
            delivered=delivered,
            status_code=status,
            error=error,
            retry_at=retry_at,
        )
