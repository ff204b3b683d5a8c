"""Webhooks: Standard Webhooks signatures (checked with the official library), retries with backoff
keeping the message id, replay protection, and the delivery log — on both databases."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from imagefunnel.service.webhooks import WebhookDispatcher, check_target, new_secret, sign
from imagefunnel.store import Store
from imagefunnel.store.tenancy import Tenancy
from imagefunnel.store.webhook_log import WebhookLog


class Receiver:
    """A loopback endpoint that fails its first ``fail_first`` requests with HTTP 500."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if len(receiver.received) <= receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def test_signature_is_the_standard_one() -> None:
    secret = new_secret()
    body = '{"type":"job.delivered"}'
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "msg_1", stamp, body),
    }
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"type": "job.delivered"}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body.replace("delivered", "failed"), headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


async def test_failed_deliveries_are_retried_with_backoff_under_the_same_id(store: Store) -> None:
    receiver = Receiver(fail_first=2)
    tenant = Tenancy(store).ensure_tenant("hooks")
    log = WebhookLog(store)
    hook = log.add_endpoint(tenant.id, url=receiver.url, secret=new_secret(), events=["job.*"])
    log.add_endpoint(
        tenant.id, url=receiver.url, secret=new_secret(), events=["evaluation.*"]
    )  # not subscribed
    assert log.enqueue(tenant.id, "job.delivered", {"job_id": "j1"}, job_id=None) == 1
    dispatcher = WebhookDispatcher(
        log, attempts=5, backoff_s=0.05, backoff_max_s=1.0, timeout_s=5.0, allow_private=True
    )
    assert [dispatcher.retry_delay_s(n) for n in (1, 2, 3, 6)] == [0.05, 0.1, 0.2, 1.0]
    try:
        for _ in range(100):
            await dispatcher.deliver_due()
            if len(receiver.received) == 3:
                break
            await asyncio.sleep(0.03)
    finally:
        await dispatcher.aclose()
        receiver.server.shutdown()
    assert len(receiver.received) == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(ids) == 1  # one message: the receiver can drop the retries it already handled
    for headers, body in receiver.received:
        standardwebhooks.Webhook(hook.secret).verify(body, headers)
    [row] = log.deliveries(tenant.id)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 3, 204)


async def test_a_delivery_that_never_lands_is_given_up_after_its_attempts(store: Store) -> None:
    tenant = Tenancy(store).ensure_tenant("hooks")
    log = WebhookLog(store)
    log.add_endpoint(tenant.id, url="http://127.0.0.1:9/refused", secret=new_secret(), events=["*"])
    log.enqueue(tenant.id, "job.failed", {"job_id": "j"})
    dispatcher = WebhookDispatcher(
        log, attempts=2, backoff_s=0.01, backoff_max_s=0.01, timeout_s=1.0, allow_private=True
    )
    try:
        for _ in range(50):
            await dispatcher.deliver_due()
            if log.deliveries(tenant.id)[0].status != "pending":
                break
            await asyncio.sleep(0.02)
    finally:
        await dispatcher.aclose()
    [row] = log.deliveries(tenant.id)
    assert (row.status, row.attempts) == ("failed", 2) and "Connect" in (row.last_error or "")


def test_replayed_messages_are_refused_by_the_receivers_check() -> None:
    secret = new_secret()
    old = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    body = "{}"
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(old),
        "webhook-signature": sign(secret, "msg_2", old, body),
    }
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError, match="too old"):
        standardwebhooks.Webhook(secret).verify(body, headers)
    # Re-stamping an old capture needs the secret: the signature covers the timestamp.
    headers["webhook-timestamp"] = str(int(time.time()))
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError, match="signature"):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_targets_inside_the_network_are_refused_outside_development() -> None:
    assert check_target("http://127.0.0.1/x", allow_private=False) is not None
    assert check_target("http://10.1.2.3/x", allow_private=False) is not None
    assert check_target("ftp://example.com/x", allow_private=True) is not None
    assert check_target("http://user:pw@example.com/x", allow_private=True) is not None
    assert check_target("http://127.0.0.1/x", allow_private=True) is None
