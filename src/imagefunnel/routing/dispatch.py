"""Sending one request: budget, ledger, deadline-aware timeout, health and cost bookkeeping, hedging.

An *attempt* is one call to one provider. It reserves its quote on the job's (and tenant's) budget
before anything is bought, writes the ledger's intent row (and the provider's id for the request the
moment a queue protocol accepts it), runs under a timeout derived from the
provider's observed tail latency and capped by the job's deadline, and settles everything with the
provider's own charge. A *hedged* attempt sends a backup to the next-ranked provider once the first
has run longer than its p95 latency; the first image wins and the loser is cancelled (adapters
cancel at the provider where the protocol allows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from imagefunnel.errors import (
    BadOutput,
    BudgetExceeded,
    NotAdmitted,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    describe,
)
from imagefunnel.providers.base import (
    Generation,
    GenerationRequest,
    PriceUnit,
    Provider,
    Quote,
    Reattachable,
    Submitted,
    abandoned_charge,
)
from imagefunnel.routing.budget import BudgetGuard
from imagefunnel.routing.capacity import CapacityBook
from imagefunnel.routing.health import HealthTracker
from imagefunnel.routing.ledger import AttemptLedger, SpendBook
from imagefunnel.routing.passrates import PassRateBook, PassRateKey
from imagefunnel.routing.policies import Option
from imagefunnel.routing.pricebook import PriceBook

__all__ = ["Dispatcher", "HedgeSettings", "TimeoutSettings"]


@dataclass(frozen=True, slots=True)
class TimeoutSettings:
    """Per-attempt timeout: ``factor`` × the provider's p99 (at least ``min_s`` and twice the
    expected latency, so a cold start is not cut off), at most ``max_s``, never past the deadline."""

    max_s: float = 60.0
    min_s: float = 5.0
    factor: float = 3.0


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    """Send a backup request after the primary's ``quantile`` latency ("The Tail at Scale");
    ``max_fraction`` caps hedges to that share of requests, so hedging adds bounded load."""

    quantile: float = 0.95
    min_delay_s: float = 0.0
    max_fraction: float = 0.1


@dataclass(frozen=True, slots=True)
class Attempt:
    request: GenerationRequest
    option: Option
    numbers: Iterator[int]  # shared by all attempts of one request: ledger attempt numbers
    job_id: str
    wave: int
    use_case: str
    budgets: tuple[BudgetGuard, ...]
    timeout_s: float


Failures = list[tuple[str, ProviderError]]


class Dispatcher:
    """Runs attempts for the router; holds no per-request state between calls."""

    def __init__(
        self,
        *,
        providers: Mapping[str, Provider],
        ledger: AttemptLedger,
        spend: SpendBook,
        health: HealthTracker,
        prices: PriceBook,
        pass_rates: PassRateBook,
        clock: Callable[[], float],
        hedging: HedgeSettings | None,
        capacity: CapacityBook | None = None,
        slots: Callable[[str], int | None] = lambda _name: None,
    ) -> None:
        self._providers = providers
        self._capacity = capacity or CapacityBook(clock=clock)
        self._slots = slots
        self._ledger = ledger
        self._spend = spend
        self._health = health
        self._prices = prices
        self._pass_rates = pass_rates
        self._clock = clock
        self._hedging = hedging
        self.requests = 0
        self.hedges = 0

    async def run(self, attempts: Sequence[Attempt]) -> tuple[Generation | None, Failures]:
        """Try ``attempts[0]`` (hedged by ``attempts[1]`` when hedging is on); the generation if one
        succeeded, and the failures either way. ``BudgetExceeded`` propagates from the primary."""
        self.requests += 1
        primary = attempts[0]
        delay = self._hedge_delay(primary) if len(attempts) > 1 else None
        if delay is None:
            try:
                return await self.attempt(primary), []
            except ProviderError as exc:
                return None, [(primary.option.provider, exc)]
        return await self._hedged(primary, attempts[1], delay)

    def _hedge_delay(self, primary: Attempt) -> float | None:
        hedging = self._hedging
        if hedging is None or self.hedges + 1 > hedging.max_fraction * self.requests + 1:
            return None
        view = primary.option.health
        tail = view.p95_s if hedging.quantile <= 0.95 else view.p99_s
        if tail is None:
            return None
        return max(hedging.min_delay_s, tail)

    async def _hedged(
        self, primary: Attempt, backup: Attempt, delay: float
    ) -> tuple[Generation | None, Failures]:
        first = asyncio.ensure_future(self.attempt(primary))
        tasks = {first: primary}
        failures: Failures = []
        try:
            done, _ = await asyncio.wait({first}, timeout=delay)
            if not done and _affordable(backup):
                self.hedges += 1
                tasks[asyncio.ensure_future(self.attempt(backup))] = backup
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return task.result(), failures
                    if isinstance(error, ProviderError):
                        failures.append((tasks[task].option.provider, error))
                    elif task is first:
                        raise error  # BudgetExceeded or a bug: not a provider's failure
            return None, failures
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ProviderError, BudgetExceeded):
                    await task

    async def attempt(self, att: Attempt) -> Generation:
        """One call to one provider, with every bookkeeping step; raises ``ProviderError``."""
        option = att.option
        quote = option.priced.quote
        # Admission is checked and taken (on_dispatch below) with no await in between, at the moment
        # of sending: a hedged primary starts as its own task, and decisions made before a 429
        # opened the breaker must not all go out after it.
        if not self._health.available(option.provider, option.model):
            raise NotAdmitted("cooling down since it was chosen; nothing sent", provider=option.provider)
        timeout_s, hold, what = _held(quote, att.timeout_s, att.budgets, queue_wait_s=option.queue_wait_s)
        reserved: list[BudgetGuard] = []
        try:
            for guard in att.budgets:
                guard.reserve(hold, what=what)  # raises BudgetExceeded before anything is bought
                reserved.append(guard)
        except BudgetExceeded:
            for guard in reserved:
                guard.settle(hold, 0.0)
            raise
        self._health.on_dispatch(option.provider, option.model)
        number = next(att.numbers)
        self._begin(att, number)
        ticket = self._capacity.started(option.provider, option.model)
        started = self._clock()
        charged = quote.usd  # what is assumed spent if we never hear back (cancelled mid-flight)
        latency: float | None = None  # learned by the capacity model only from a success
        try:
            async with asyncio.timeout(timeout_s):
                generation = await self._call(att, number)
            charged = generation.charged_usd
            latency = self._clock() - started
        except asyncio.CancelledError as exc:
            # An adapter that knows what the abandoned request cost (ComfyUI reads the server's own
            # record) says so on the cancellation; otherwise the quote stands as the upper bound.
            reported = abandoned_charge(exc)
            charged = charged if reported is None else reported
            self._end(
                att,
                number,
                "cancelled",
                charged,
                started,
                error="cancelled (charged what the provider reported, else the quote as an upper bound)",
            )
            raise
        except (ProviderError, TimeoutError) as exc:
            error = _as_provider_error(exc, option.provider, timeout_s, quote.usd)
            charged = error.charged_usd
            self._failed(att, number, error, started)
            if error is exc:
                raise
            raise error from exc
        finally:
            for guard in reserved:
                guard.settle(hold, charged)
            self._capacity.finished(
                option.provider,
                option.model,
                ticket,
                latency_s=latency,
                slots=self._slots(option.provider),
            )
        self._health.record_success(option.provider, self._clock() - started, model=option.model)
        self._prices.observe_charge(quote, charged)
        self._end(
            att, number, "succeeded", charged, started, provider_request_id=generation.provider_request_id
        )
        return generation

    def _call(self, att: Attempt, number: int) -> Awaitable[Generation]:
        """The provider's ``generate``; a queue protocol names the request to the ledger as soon as
        it is accepted, so a crash while waiting for the image leaves a request resume can fetch."""
        provider = self._providers[att.option.provider]
        if not isinstance(provider, Reattachable):
            return provider.generate(att.request)

        def submitted(accepted: Submitted) -> None:
            self._ledger.submitted(
                request_id=att.request.request_id,
                attempt=number,
                provider_request_id=accepted.provider_request_id,
            )

        return provider.generate(att.request, on_submitted=submitted)

    def _failed(self, att: Attempt, number: int, error: ProviderError, started: float) -> None:
        option = att.option
        retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
        self._health.record_failure(
            option.provider,
            describe(error),
            model=option.model,
            retry_after_s=retry_after,
            timed_out=isinstance(error, ProviderTimeout),
            rate_limited=isinstance(error, RateLimited),
        )
        if isinstance(error, BadOutput):
            # Garbage is an output that will never be accepted: it counts against the pass rate.
            self._pass_rates.observe(PassRateKey(option.provider, option.model, att.use_case), False)
        self._end(
            att,
            number,
            "failed",
            error.charged_usd,
            started,
            error=str(error),
            error_type=type(error).__name__,
        )

    def _begin(self, att: Attempt, number: int) -> None:
        quote = att.option.priced.quote
        self._ledger.begin_attempt(
            job_id=att.job_id,
            request_id=att.request.request_id,
            attempt=number,
            wave=att.wave,
            provider=quote.provider,
            model=quote.model,
            quoted_usd=quote.usd,
        )
        self._spend.dispatched(
            job_id=att.job_id,
            request_id=att.request.request_id,
            attempt=number,
            provider=quote.provider,
            quoted_usd=quote.usd,
        )

    def _end(
        self,
        att: Attempt,
        number: int,
        status: str,
        charged_usd: float,
        started: float,
        *,
        provider_request_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        self._ledger.end_attempt(
            request_id=att.request.request_id,
            attempt=number,
            status=status,
            charged_usd=charged_usd,
            latency_s=self._clock() - started,
            provider_request_id=provider_request_id,
            error=error,
            error_type=error_type,
        )
        self._spend.settled(
            request_id=att.request.request_id, attempt=number, status=status, charged_usd=charged_usd
        )


def _affordable(att: Attempt) -> bool:
    usd = att.option.priced.quote.usd
    return all(guard.remaining_usd >= usd for guard in att.budgets)


# A time-billed request cut off at its timeout is billed until the provider stops it (ComfyUI
# interrupts at the next node boundary, Replicate at its next poll): held on top of the timeout.
STOP_GRACE = 0.25
# The longest run a GPU-second attempt is allowed, in multiples of the quote's expected run.
BILLED_TAIL = 4.0


def _held(
    quote: Quote, timeout_s: float, budgets: tuple[BudgetGuard, ...], *, queue_wait_s: float = 0.0
) -> tuple[float, float, str]:
    """(timeout, amount held on the budgets, what the hold is called) for one attempt.

    A per-image or per-megapixel price is known before dispatch: the quote is held. A GPU-second
    price is not: a slow box, a cold start or a long run bills more seconds than the quote assumed
    (the demo box charged 3x its quote). So the worst case is held, the rate times the attempt's
    timeout plus the time the provider takes to stop. The timeout is shortened to at most
    ``BILLED_TAIL`` expected runs and to what the budget left pays for, as long as that still leaves
    twice the expected run; a request cut off by it is billed within what was held. A request that
    waits in the provider's queue first (a one-slot box) gets the expected wait on top of the
    ``BILLED_TAIL`` runs, so it is not cut off while waiting; the hold covers that time too (the
    wait may turn out shorter), and is released on settle.
    """
    if quote.unit is not PriceUnit.PER_GPU_SECOND or quote.unit_price_usd <= 0:
        return timeout_s, quote.usd, "next request quoted"
    rate = quote.unit_price_usd * (1 + STOP_GRACE)
    expected_s = quote.usd / quote.unit_price_usd
    left = min((guard.remaining_usd for guard in budgets), default=math.inf)
    # One attempt never holds more than its run could plausibly bill, so concurrent attempts share
    # a small budget instead of the first one holding all of it.
    affordable_s = min(timeout_s, left / rate, BILLED_TAIL * expected_s + max(0.0, queue_wait_s))
    if affordable_s < 2 * expected_s:
        return timeout_s, max(quote.usd, rate * 2 * expected_s), "next request's worst case"
    return affordable_s, rate * affordable_s, "next request's worst case"


def _as_provider_error(
    exc: ProviderError | TimeoutError, provider: str, timeout_s: float, quote_usd: float
) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    # asyncio.timeout raises TimeoutError from the cancellation it delivered to the adapter, which
    # may carry what the cut-off request was billed (ComfyUI: to the interrupt landing). An adapter
    # that says nothing (a synchronous call cut off mid-flight runs and bills at the provider all
    # the same) is charged its quote, the upper bound, as a cancelled attempt is.
    reported = abandoned_charge(exc.__cause__)
    charged = quote_usd if reported is None else reported
    return ProviderTimeout(f"no result within {timeout_s:.1f}s", provider=provider, charged_usd=charged)
