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

    @property
    def committed_usd(self) -> float:
        return self.settled_usd + self.reserved_usd

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.committed_usd)

    def reserve(self, usd: float) -> None:
        if self.committed_usd + usd > self.limit_usd + 1e-12:
            self.last_refusal = f"budget ${self.limit_usd:.4f}: ${self.committed_usd:.4f} committed, next request quoted ${usd:.4f}"
            raise BudgetExceeded(self.last_refusal)
        self.reserved_usd += usd

    def settle(self, reserved_usd: float, charged_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        self.settled_usd += charged_usd
