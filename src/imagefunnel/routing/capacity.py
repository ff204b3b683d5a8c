"""Capacity: how long a request placed on a provider now would take to complete, queue included.

A hosted API takes any number of requests at once; a self-hosted ComfyUI box runs one prompt at a
time and queues the rest; a local GPU worker has a fixed number of slots. A router that ranks by
price alone sends everything to the cheap box, and the job's wall time becomes the box's queue.

So the router counts its own requests in flight per (provider, model), hears the queue depth a
provider reports (ComfyUI's ``/queue``, through its adapter's ``estimate``), and learns from every
completion how long a request takes and how much each request ahead of it adds:

* with ``slots`` known (declared in the provider's traits, or 1 for a ComfyUI server), a request with
  ``a`` requests ahead waits ``max(0, a + 1 − slots) / slots`` service times, and the service time is
  learned from completions with that wait taken out;
* with ``slots`` unknown, ``latency = service + a × wait_per_ahead`` is fitted by exponentially
  weighted least squares over recent (ahead, latency) pairs; a hosted API's fit says ≈ 0 s per request
  ahead, a capacity-limited one says what its queue costs. Until the requests ahead vary, nothing
  separates the two; while they do not, or the fitted wait per request ahead is under a tenth of a
  service time (noise, or ten and more slots), the provider is taken as unbounded and its latency is
  what the router knew before (the EWMA of its observed latencies, or its traits' prior).

Expected completion = queue wait + service time. The router refuses a placement whose expected
completion is past the job's deadline when another option is not, and the policy weighs it in the
latency penalty, so the cheap box's queue spills the overflow to a dearer provider.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CapacityBook", "Completion"]

# Weight of the past in the least-squares fit, per sample (≈ the last 30 completions matter).
_DECAY = 0.97
_SERVICE_ALPHA = 0.2
# The fit needs this much spread (variance) in requests ahead to tell queueing from noise.
_MIN_SPREAD = 0.25
_MIN_SAMPLES = 4
# Below this wait per request ahead (a fraction of the service time) the fit is noise, not a queue:
# ten or more slots in use, or none at all. A hosted API's fitted slope sits far below it.
_QUEUE_SIGNAL = 0.1
# A reported queue depth older than this is ignored (the box may have drained since).
_DEPTH_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class Completion:
    """When a request placed now is expected to be done: waiting behind others, then served."""

    ahead: int  # requests ahead of it (ours in flight and what the provider reports queued)
    queue_wait_s: float
    service_s: float

    @property
    def total_s(self) -> float:
        return self.queue_wait_s + self.service_s


@dataclass(slots=True)
class _Fit:
    """Exponentially weighted sums for ``latency = service + ahead × per_ahead``."""

    w: float = 0.0
    sa: float = 0.0
    sl: float = 0.0
    saa: float = 0.0
    sal: float = 0.0
    samples: int = 0

    def add(self, ahead: float, latency: float) -> None:
        self.w = self.w * _DECAY + 1.0
        self.sa = self.sa * _DECAY + ahead
        self.sl = self.sl * _DECAY + latency
        self.saa = self.saa * _DECAY + ahead * ahead
        self.sal = self.sal * _DECAY + ahead * latency
        self.samples += 1

    def solve(self) -> tuple[float, float] | None:
        """(service, per_ahead), or ``None`` before there is anything to fit."""
        if self.samples == 0:
            return None
        mean_a, mean_l = self.sa / self.w, self.sl / self.w
        var_a = self.saa / self.w - mean_a * mean_a
        if self.samples < _MIN_SAMPLES or var_a < _MIN_SPREAD:
            return mean_l, 0.0
        per_ahead = max(0.0, (self.sal / self.w - mean_a * mean_l) / var_a)
        service = max(0.0, mean_l - per_ahead * mean_a)
        if service <= 0.0:  # queueing explains everything: keep a positive service time
            service = mean_l / (1.0 + mean_a)
        return service, per_ahead


@dataclass(slots=True)
class _State:
    # Our requests in flight, in dispatch order: ticket -> requests ahead of it (see ``finished``).
    flights: dict[int, int] = field(default_factory=dict)
    fit: _Fit = field(default_factory=_Fit)
    service_s: float | None = None  # learned with the wait taken out (slots known)
    depth: int = 0
    depth_at: float = -math.inf
    reported_service_s: float | None = None


class CapacityBook:
    """Requests in flight, reported queue depths and learned service times per (provider, model)."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._states: dict[tuple[str, str], _State] = {}
        self._tickets = 0

    def _state(self, provider: str, model: str) -> _State:
        key = (provider, model)
        found = self._states.get(key)
        if found is None:
            found = self._states[key] = _State()
        return found

    def in_flight(self, provider: str, model: str) -> int:
        return len(self._state(provider, model).flights)

    def note_depth(self, provider: str, model: str, depth: int, *, service_s: float | None = None) -> None:
        """The provider's own count of requests queued or running (ours included), and its own
        estimate of one request's run (the service time until completions teach one)."""
        st = self._state(provider, model)
        st.depth, st.depth_at = max(0, depth), self._clock()
        if service_s is not None and math.isfinite(service_s) and service_s > 0:
            st.reported_service_s = service_s

    def ahead(self, provider: str, model: str) -> int:
        """Requests ahead of one placed now: ours in flight, or the provider's fresh count if higher
        (it sees other clients' requests too; it includes ours, so the two are not added)."""
        st = self._state(provider, model)
        fresh = self._clock() - st.depth_at <= _DEPTH_TTL_S
        return max(len(st.flights), st.depth if fresh else 0)

    def started(self, provider: str, model: str) -> int:
        """Count a request as in flight; returns its ticket for ``finished``."""
        ahead = self.ahead(provider, model)
        self._tickets += 1
        self._state(provider, model).flights[self._tickets] = ahead
        return self._tickets

    def finished(
        self,
        provider: str,
        model: str,
        ticket: int,
        *,
        latency_s: float | None,
        slots: int | None,
    ) -> None:
        """Request ``ticket`` ended; ``latency_s`` (dispatch to result) is learned from when it
        succeeded (``None``: it failed or was cancelled). A request that leaves without a result
        mostly left the queue unserved, so those dispatched after it count one fewer ahead."""
        st = self._state(provider, model)
        ahead = st.flights.pop(ticket, None)
        if ahead is None:
            return
        if latency_s is None or not math.isfinite(latency_s) or latency_s < 0:
            for later, count in st.flights.items():
                if later > ticket and count > 0:
                    st.flights[later] = count - 1
            return
        st.fit.add(float(ahead), latency_s)
        if slots is not None:
            sample = latency_s / (1.0 + _waits(ahead, slots))
            prev = st.service_s
            st.service_s = sample if prev is None else prev + _SERVICE_ALPHA * (sample - prev)

    def completion(
        self, provider: str, model: str, *, slots: int | None, prior_service_s: float
    ) -> Completion:
        """The expected completion of a request placed now; ``prior_service_s`` stands in for the
        service time until completions have taught one."""
        st = self._state(provider, model)
        ahead = self.ahead(provider, model)
        if st.reported_service_s is not None:
            prior_service_s = st.reported_service_s
        if slots is not None:
            service = st.service_s if st.service_s is not None else prior_service_s
            return Completion(ahead, _waits(ahead, slots) * service, service)
        solved = st.fit.solve()
        if solved is None:
            return Completion(ahead, 0.0, prior_service_s)
        service, per_ahead = solved
        if per_ahead < _QUEUE_SIGNAL * service:
            # No sign of a queue (a hosted API): its latency as the router always knew it.
            return Completion(ahead, 0.0, prior_service_s)
        return Completion(ahead, ahead * per_ahead, service)


def _waits(ahead: int, slots: int) -> float:
    """Service times a request waits with ``ahead`` requests ahead of it on ``slots`` slots (FIFO)."""
    return max(0, ahead + 1 - slots) / slots
