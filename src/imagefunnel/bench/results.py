"""What one benchmark run of one policy measured, and the numbers derived from it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imagefunnel.bench.workload import JobStats

__all__ = ["PolicyResult", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's run. Money comes from the market's billing log (what providers charged), never
    from the router's own books; ``expected_usd`` is what the router's quotes said it would be."""

    name: str
    jobs: tuple[JobStats, ...]
    spend_usd: float
    billed_requests: int
    spend_by_provider: Mapping[str, float]
    ledger_usd: float | None = None  # what the router's own ledger says it spent (None: no ledger)
    hedges: int = 0
    wall_s: float = 0.0
    # Requests the market received before a Retry-After it had announced had run out.
    before_retry_after: int = 0

    @property
    def delivered(self) -> int:
        return sum(min(job.accepted, job.deliver) for job in self.jobs)

    @property
    def accepted(self) -> int:
        return sum(job.accepted for job in self.jobs)

    @property
    def dispatched(self) -> int:
        return sum(job.dispatched for job in self.jobs)

    @property
    def failed_requests(self) -> int:
        return sum(job.failed_requests for job in self.jobs)

    @property
    def generated(self) -> int:
        return sum(job.generated for job in self.jobs)

    @property
    def cost_per_delivered(self) -> float:
        return self.spend_usd / self.delivered if self.delivered else math.inf

    @property
    def ledger_vs_bill_pct(self) -> float:
        """How far the router's own ledger is from the market's billing log, in % (nan: no ledger)."""
        if self.ledger_usd is None or self.spend_usd <= 0:
            return math.nan
        return 100.0 * (self.ledger_usd - self.spend_usd) / self.spend_usd

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed_requests / self.dispatched if self.dispatched else 0.0

    @property
    def candidates_per_delivered(self) -> float:
        return self.generated / self.delivered if self.delivered else math.inf

    @property
    def jobs_complete(self) -> int:
        return sum(1 for job in self.jobs if job.accepted >= job.deliver)

    def job_seconds(self, q: float) -> float:
        return percentile([job.duration_s for job in self.jobs], q)

    def deadline_misses(self, deadline_s: float) -> int:
        """Jobs that did not have their K accepted images by their deadline."""
        return sum(1 for job in self.jobs if job.accepted < job.deliver or job.duration_s > deadline_s)
