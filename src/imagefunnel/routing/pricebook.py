"""The price book: live quotes per provider, cold-start expectations, and quote-vs-charge drift.

Providers quote in their own unit (per image, per megapixel, per GPU-second at the current spot
price, per token); the adapter turns that into USD for the request. The book caches each quote for
``ttl_s`` (one refresh in flight per key: a thousand concurrent requests cause one pricing call),
and learns per provider how far its charges drift from its quotes (a GPU-second quote assumes a
run time; the bill says what it was) so routing compares what providers will *actually* charge.

Drift is only what the quotes do not already explain. A request quoted just before a spot price
tripled is billed at the new price; that is the price change, which the next quote shows, not a
habit of the provider. Learning it as drift would price the provider at 3 × 3 and keep it out of
routing for as long as the spike lasts and after it (nothing bought there, so no charge corrects it).
So a charge is compared with the quote *at the newest known price* when that explains it better, a
price change seen on refresh takes back the drift it explains, and learned drift fades towards 1
with a half-life when no fresh charge confirms it.

Whether a provider has billed lately (:meth:`PriceBook.has_billed`) tells a forecast whether its
expected price rests on bills or only on a quote.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from imagefunnel.providers.base import GenerationRequest, PriceUnit, Provider, Quote

__all__ = ["PriceBook", "PricedQuote", "ProviderTraits"]

_QuoteKey = tuple[str, str, int, int]


@dataclass(frozen=True, slots=True)
class ProviderTraits:
    """What the router knows about a provider beyond its API: where it runs, what it does with data,
    how long it takes before measurements exist, and how slow it is when cold."""

    region: str = "global"
    retains_data: bool = True
    trains_on_data: bool = False
    expected_latency_s: float = 10.0  # prior latency until measurements exist
    cold_start_s: float = 0.0  # extra latency of the first request after an idle spell
    warm_for_s: float = 300.0  # how long a provider stays warm after a request finishes
    # Requests it runs at once, the rest wait in its queue (a GPU box: its GPUs); None: unknown,
    # learned from latencies (see ``routing.capacity``).
    slots: int | None = None

    def __post_init__(self) -> None:
        if self.expected_latency_s < 0 or self.cold_start_s < 0 or self.warm_for_s < 0:
            raise ValueError("latencies must be ≥ 0")
        if self.slots is not None and self.slots < 1:
            raise ValueError("slots must be ≥ 1")


@dataclass(frozen=True, slots=True)
class PricedQuote:
    """A provider's quote and what the router expects it to really cost."""

    quote: Quote
    fetched_at: float
    expected_usd: float  # quote × learned charge/quote drift (+ cold-start GPU time when cold)


@dataclass(slots=True)
class _Drift:
    ratio: float = 1.0
    samples: int = 0
    observed_at: float = 0.0  # when the last charge updated it; it fades from then on
    billed_at: float = -math.inf  # when the last charge came (a price change moves observed_at too)


def _log_distance(a: float, b: float) -> float:
    return abs(math.log(a / b))


class PriceBook:
    """Cached quotes keyed by (provider, model, width, height)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        ttl_s: float = 5.0,
        drift_alpha: float = 0.1,
        drift_half_life_s: float = 120.0,
    ) -> None:
        if ttl_s < 0 or not 0.0 < drift_alpha <= 1.0 or drift_half_life_s <= 0:
            raise ValueError("ttl_s must be ≥ 0, drift_alpha in (0, 1] and drift_half_life_s > 0")
        self._clock = clock
        self._ttl_s = ttl_s
        self._drift_alpha = drift_alpha
        self._drift_half_life_s = drift_half_life_s
        self._quotes: dict[_QuoteKey, tuple[Quote, float]] = {}
        self._pending: dict[_QuoteKey, asyncio.Task[Quote]] = {}
        self._drift: dict[tuple[str, str], _Drift] = {}
        # The newest unit price each (provider, model) quoted: what a charge billed late is billed at.
        self._unit_prices: dict[tuple[str, str], float] = {}

    @staticmethod
    def _key(provider: str, request: GenerationRequest) -> _QuoteKey:
        return (provider, request.model, request.width, request.height)

    def fresh(self, provider: str, request: GenerationRequest) -> tuple[Quote, float] | None:
        """The cached quote and when it was fetched, if younger than the TTL."""
        found = self._quotes.get(self._key(provider, request))
        if found is None or self._clock() - found[1] > self._ttl_s:
            return None
        return found

    async def refresh(self, provider: Provider, request: GenerationRequest) -> Quote:
        """Fetch a new quote (or join the fetch already in flight); raises the provider's error."""
        key = self._key(provider.name, request)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(provider.quote(request))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        quote = await asyncio.shield(task)
        self._quotes[key] = (quote, self._clock())
        self._note_unit_price(quote)
        return quote

    def _note_unit_price(self, quote: Quote) -> None:
        """Remember the newest unit price; a change takes back the learned drift it explains."""
        pair = (quote.provider, quote.model)
        before = self._unit_prices.get(pair)
        new = quote.unit_price_usd
        if new <= 0:
            return
        self._unit_prices[pair] = new
        drift = self._drift.get(pair)
        if before is None or before <= 0 or drift is None or math.isclose(before, new, rel_tol=1e-9):
            return
        change = new / before
        ratio = self._current_ratio(drift)
        # Only drift in the direction of the change can be that change in disguise; never overshoot 1.
        if change > 1.0 and ratio > 1.0:
            drift.ratio = max(1.0, ratio / change)
        elif change < 1.0 and ratio < 1.0:
            drift.ratio = min(1.0, ratio / change)
        else:
            return
        drift.observed_at = self._clock()

    async def quote(self, provider: Provider, request: GenerationRequest) -> Quote:
        cached = self.fresh(provider.name, request)
        return cached[0] if cached is not None else await self.refresh(provider, request)

    def priced(self, quote: Quote, fetched_at: float, *, cold_start_s: float = 0.0) -> PricedQuote:
        """What ``quote`` is expected to cost: drift-corrected, plus paid GPU time of a cold start."""
        usd = quote.usd * self.drift(quote.provider, quote.model)
        if quote.unit is PriceUnit.PER_GPU_SECOND and cold_start_s > 0:
            usd += quote.unit_price_usd * cold_start_s
        return PricedQuote(quote, fetched_at, usd)

    def observe_charge(self, quote: Quote, charged_usd: float) -> None:
        """Learn charge/quote drift from a finished generation's actual charge."""
        if quote.usd <= 0 or charged_usd <= 0:
            return
        pair = (quote.provider, quote.model)
        drift = self._drift.setdefault(pair, _Drift())
        ratio = charged_usd / quote.usd
        newest = self._unit_prices.get(pair)
        if newest is not None and quote.unit_price_usd > 0:
            repriced = ratio / (newest / quote.unit_price_usd)
            # Billed at the price in force at completion: the quotes already show that change.
            if _log_distance(repriced, 1.0) < _log_distance(ratio, 1.0):
                ratio = repriced
        current = self._current_ratio(drift)
        drift.ratio = ratio if drift.samples == 0 else current + self._drift_alpha * (ratio - current)
        drift.samples += 1
        drift.observed_at = drift.billed_at = self._clock()

    def _current_ratio(self, drift: _Drift) -> float:
        """The learned ratio faded towards 1 by the time since a charge last confirmed it."""
        age = max(0.0, self._clock() - drift.observed_at)
        weight = 0.5 ** (age / self._drift_half_life_s)
        return math.exp(math.log(drift.ratio) * weight)

    def has_billed(self, provider: str, model: str) -> bool:
        """Whether a charge of this provider's ``model`` was seen within the drift's half-life: its
        expected price then rests on what it bills, not only on what it quotes."""
        found = self._drift.get((provider, model))
        return found is not None and self._clock() - found.billed_at <= self._drift_half_life_s

    def drift(self, provider: str, model: str) -> float:
        """How much more (or less) than its quote this provider is expected to charge."""
        found = self._drift.get((provider, model))
        return self._current_ratio(found) if found is not None else 1.0
