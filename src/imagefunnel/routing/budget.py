"""Budget enforcement before dispatch: reserve the quote, settle with the actual charge."""

from __future__ import annotations

from dataclasses import dataclass

from imagefunnel.errors import BudgetExceeded


@dataclass(slots=True)
class BudgetGuard:
    """Tracks committed spend (settled charges plus reserved quotes of requests in flight).

    Reservation is synchronous, so within one event loop two requests can never both squeeze into
    the last remaining dollars.
    """

    limit_usd: float
    settled_usd: float = 0.0
    reserved_usd: float = 0.0
    last_refusal: str | None = None
    last_refused_usd: float = 0.0

    @property
    def committed_usd(self) -> float:
        return self.settled_usd + self.reserved_usd

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.committed_usd)

    def reserve(self, usd: float, *, what: str = "next request quoted") -> None:
        if self.committed_usd + usd > self.limit_usd + 1e-12:
            self.last_refusal = (
                f"budget ${self.limit_usd:.4f}: ${self.committed_usd:.4f} committed, {what} ${usd:.4f}"
            )
            self.last_refused_usd = usd
            raise BudgetExceeded(self.last_refusal)
        self.reserved_usd += usd

    def refusal_stands(self) -> bool:
        """Whether the last refusal still holds. A request refused while others held reservations
        (a worst case held for a time-billed box) may fit once they settled below their holds."""
        if self.last_refusal is None:
            return False
        if self.remaining_usd + 1e-12 >= self.last_refused_usd:
            self.last_refusal = None
            return False
        return True

    def settle(self, reserved_usd: float, charged_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        self.settled_usd += charged_usd


class TenantBudgets:
    """One :class:`BudgetGuard` per tenant, shared by all of the tenant's jobs in this process.

    The router reserves on the job's guard and on its tenant's guard before dispatch, so a tenant's
    concurrent jobs can never overshoot the tenant's limit together.
    """

    def __init__(self, limits_usd: dict[str, float], *, default_usd: float | None = None) -> None:
        for tenant, limit in limits_usd.items():
            if limit < 0:
                raise ValueError(f"tenant {tenant!r}: budget must be ≥ 0")
        self._limits = dict(limits_usd)
        self._default = default_usd
        self._guards: dict[str, BudgetGuard] = {}

    def guard(self, tenant: str) -> BudgetGuard:
        """The tenant's guard; raises ``BudgetExceeded`` for a tenant with no budget at all."""
        found = self._guards.get(tenant)
        if found is None:
            limit = self._limits.get(tenant, self._default)
            if limit is None:
                raise BudgetExceeded(f"tenant {tenant!r} has no budget")
            found = self._guards[tenant] = BudgetGuard(limit)
        return found
