"""Cooldowns in Redis, shared by every worker: one key per cooling (provider, model), with a TTL.

A hold is a key ``{prefix}:cooldown:{provider}:{model}`` that expires when the cooldown ends, set by
a small Lua script that only ever lengthens it (two workers told different Retry-Afters keep the
longer). The time left is the key's ``PTTL``: Redis keeps the clock, so the workers' clocks need not
agree. Reads are cached per key for ``refresh_s`` (a quarter second by default), so a router
deciding many requests asks Redis at most four times a second per (provider, model); a hold made
here is seen here at once and by the others within ``refresh_s``.

Redis being down never fails a job: a failed call is logged, this process goes on with what it knows
itself, and Redis is tried again after ``retry_s``. Uses redis-py, Redis's own client: synchronous
calls of a fraction of a millisecond on a local network, which is cheaper than a thread hop and
lets :class:`~imagefunnel.routing.health.HealthTracker` stay synchronous.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from imagefunnel.errors import SharedStateError

__all__ = ["RedisCooldowns"]

log = logging.getLogger(__name__)

# KEYS[1]: the cooldown key; ARGV[1]: milliseconds. Lengthens the key's TTL, never shortens it.
_HOLD = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


class RedisCooldowns:
    """:class:`~imagefunnel.routing.cooldowns.SharedCooldowns` on a Redis server (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "imagefunnel",
        refresh_s: float = 0.25,
        timeout_s: float = 0.5,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),  # no retry loop inside a routing decision
            )
        except ValueError as exc:
            raise SharedStateError(f"shared state {url!r}: {exc}") from exc
        self._hold = self._redis.register_script(_HOLD)
        self._prefix = prefix
        self._refresh_s = refresh_s
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float]] = {}  # key -> (read at, cooling until), local clock
        self._down_until = 0.0

    def key(self, provider: str, model: str) -> str:
        return f"{self._prefix}:cooldown:{provider}:{model}"

    def hold(self, provider: str, model: str, seconds: float) -> None:
        if seconds <= 0:
            return
        key = self.key(provider, model)
        now = self._clock()
        with self._lock:
            _, until = self._cache.get(key, (now, 0.0))
            self._cache[key] = (now, max(until, now + seconds))  # seen here at once, Redis or not
        if self._usable(now):
            try:
                self._hold(keys=[key], args=[max(1, round(seconds * 1000))])
            except redis.RedisError as exc:
                self._went_down(exc)

    def remaining_s(self, provider: str, model: str) -> float:
        key = self.key(provider, model)
        now = self._clock()
        with self._lock:
            read_at, until = self._cache.get(key, (-float("inf"), 0.0))
        if now - read_at >= self._refresh_s and self._usable(now):
            try:
                left_ms = int(self._redis.pttl(key))  # -2: no such key; -1: no expiry (never set so)
            except redis.RedisError as exc:
                self._went_down(exc)
            else:
                # Keep a local hold that is longer than Redis's (made while Redis was down).
                until = max(until if until > now else 0.0, now + max(0, left_ms) / 1000)
                with self._lock:
                    self._cache[key] = (now, until)
        return max(0.0, until - now)

    def clear(self) -> None:
        """Drop every cooldown under this prefix (tests; an operator's reset)."""
        with self._lock:
            self._cache.clear()
        keys = list(self._redis.scan_iter(match=f"{self._prefix}:cooldown:*", count=500))
        if keys:
            self._redis.delete(*keys)

    def close(self) -> None:
        self._redis.close()

    def _usable(self, now: float) -> bool:
        with self._lock:
            return now >= self._down_until

    def _went_down(self, exc: redis.RedisError) -> None:
        # Logged at most once per ``retry_s``: Redis is not asked again before then.
        with self._lock:
            self._down_until = self._clock() + self._retry_s
        log.warning(
            "shared cooldowns unavailable (%s); routing on local health for %.0fs", exc, self._retry_s
        )
