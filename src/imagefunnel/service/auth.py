"""API keys and tenants: who is asking, and whether they may ask again yet.

A request names its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; the dashboard
keeps it in an HttpOnly, SameSite=Strict cookie set by its sign-in form (so a page's EventSource,
which cannot send headers, is signed in too, and other sites' forms cannot use it). Keys are looked
up by their SHA-256. Every tenant has a token bucket: ``rate_per_s`` sustained, ``burst`` at once; a
request over it is a 429 with ``Retry-After``.

The buckets live in this process (several API processes each allow the rate); a shared limiter
implements :class:`RateLimiter` the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from imagefunnel.service.errors import ApiError
from imagefunnel.store.tenancy import Tenancy, Tenant

__all__ = ["KEY_COOKIE", "RateLimiter", "TokenBuckets", "authenticate_request"]

KEY_COOKIE = "imagefunnel_key"


class RateLimiter(Protocol):
    def acquire(self, tenant: Tenant) -> float:
        """0 if the request may go ahead now, else the seconds until it could."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per tenant, in memory; tenants without limits get the defaults."""

    def __init__(self, *, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant: Tenant) -> float:
        rate = tenant.rate_per_s or self._rate
        burst = float(tenant.burst or self._burst)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(tenant.id, _Bucket(burst, now))
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or request.cookies.get(KEY_COOKIE) or None


def authenticate_request(request: Request, tenancy: Tenancy, limiter: RateLimiter) -> Tenant:
    """The tenant whose key the request carries; 401 without a valid key, 429 over its rate."""
    secret = presented_key(request)
    if not secret or len(secret) > 200:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = tenancy.authenticate(secret)
    if tenant is None:
        raise ApiError(
            401, "unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    wait = limiter.acquire(tenant)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"tenant {tenant.name!r} is over its request rate; retry in {wait:.2f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return tenant
