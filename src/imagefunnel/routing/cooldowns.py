"""Cooldowns shared between routers: a provider's Retry-After, or a tripped breaker, seen by all.

Each router keeps its own :class:`~imagefunnel.routing.health.HealthTracker`, so without sharing, a
worker running several jobs (a router per job), or several workers, would each learn the hard way
that a provider said "come back in 30 s": one 429 per router. A :class:`SharedCooldowns` backend
carries just that fact: until when a (provider, model) must not be sent anything. A tracker
publishes a cooldown when the provider sends Retry-After or when its breaker trips, and treats a
(provider, model) as unavailable while any router's cooldown holds.

Only cooldowns are shared, not failure counts: each router's breaker still trips on what it saw
itself (sharing counts would need a round trip per request), and when a shared cooldown ends every
router may send again (each half-open trial stays local).

Backends are chosen by URL (:func:`open_cooldowns`): ``memory://`` shares within this process
(the jobs of one worker), ``redis://host:6379/0`` across processes and machines
(:mod:`imagefunnel.routing.redis_cooldowns`, ``pip install 'imagefunnel[redis]'``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from imagefunnel.errors import SharedStateError

__all__ = ["LocalCooldowns", "SharedCooldowns", "open_cooldowns"]


class SharedCooldowns(Protocol):
    """Until when each (provider, model) must not be sent anything; safe to call from any thread.

    Never raises for a backend that is down: cooldowns are an optimisation, and a router must go
    on routing on its own knowledge when it cannot reach the others'.
    """

    def hold(self, provider: str, model: str, seconds: float) -> None:
        """Nothing goes to (provider, model) for ``seconds`` from now (a longer hold stays)."""
        ...

    def remaining_s(self, provider: str, model: str) -> float:
        """Seconds left of the longest hold on (provider, model); 0.0 if none."""
        ...

    def close(self) -> None: ...


class LocalCooldowns:
    """Cooldowns shared by the routers of one process (the default: the jobs of one worker)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def hold(self, provider: str, model: str, seconds: float) -> None:
        if seconds <= 0:
            return
        key = (provider, model)
        until = self._clock() + seconds
        with self._lock:
            self._until[key] = max(until, self._until.get(key, 0.0))

    def remaining_s(self, provider: str, model: str) -> float:
        with self._lock:
            until = self._until.get((provider, model), 0.0)
        return max(0.0, until - self._clock())

    def close(self) -> None:
        with self._lock:
            self._until.clear()


def open_cooldowns(url: str, *, prefix: str = "imagefunnel") -> SharedCooldowns:
    """``memory://`` or ``redis://[:password@]host[:port][/db]`` (``rediss://`` for TLS).

    ``prefix`` starts every Redis key, so several deployments (or tests) can share one server.
    SharedStateError says why a URL cannot be used.
    """
    scheme = urlsplit(url.strip()).scheme
    if scheme == "memory":
        return LocalCooldowns()
    if scheme in ("redis", "rediss"):
        from imagefunnel.routing.redis_cooldowns import RedisCooldowns  # redis is an optional extra

        return RedisCooldowns(url.strip(), prefix=prefix)
    raise SharedStateError(f"shared state {url!r}: expected memory:// or redis://host:port/db")
