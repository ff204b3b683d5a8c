"""Router v0: the cheapest healthy capable provider first, the rest as the fallback chain.

Every attempt is written to the ledger twice: the quote before the call (intent), the charge after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from imagefunnel.errors import NoProviderAvailable, ProviderError, ProviderTimeout, RateLimited
from imagefunnel.providers.base import Capabilities, Generation, GenerationRequest, Provider, Quote
from imagefunnel.routing.budget import BudgetGuard
from imagefunnel.routing.health import HealthTracker


class AttemptLedger(Protocol):
    """Where the router records what it buys (the store implements it)."""

    def begin_attempt(
        self,
        *,
        job_id: str,
        request_id: str,
        attempt: int,
        wave: int,
        provider: str,
        model: str,
        quoted_usd: float,
    ) -> None: ...

    def end_attempt(
        self,
        *,
        request_id: str,
        attempt: int,
        status: str,
        charged_usd: float,
        latency_s: float,
        provider_request_id: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RouteContext:
    """Who is buying: the job (for the ledger) and its constraints."""

    job_id: str
    wave: int
    deadline: float  # absolute, on the router's clock
    budget: BudgetGuard | None = None
    permits: Callable[[str], bool] = lambda _name: True


def _fits(caps: Capabilities, request: GenerationRequest) -> bool:
    return (
        request.model in caps.models
        and request.width <= caps.max_width
        and request.height <= caps.max_height
        and (not request.reference_images or caps.supports_reference_images)
    )


class Router:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        ledger: AttemptLedger,
        clock: Callable[[], float] = time.monotonic,
        health: HealthTracker | None = None,
        request_timeout_s: float = 60.0,
    ) -> None:
        if not providers:
            raise NoProviderAvailable("the router needs at least one provider")
        self._providers = {p.name: p for p in providers}
        self._ledger = ledger
        self._clock = clock
        self.health = health or HealthTracker(clock=clock)
        self._timeout = request_timeout_s
        self._caps: dict[str, Capabilities] = {}

    @property
    def provider_names(self) -> list[str]:
        return list(self._providers)

    async def _capable(self, request: GenerationRequest, ctx: RouteContext) -> list[Provider]:
        out = []
        for name, provider in self._providers.items():
            if not ctx.permits(name):
                continue
            if name not in self._caps:
                self._caps[name] = await provider.capabilities()
            if _fits(self._caps[name], request):
                out.append(provider)
        return out

    async def quotes(self, request: GenerationRequest, ctx: RouteContext) -> list[Quote]:
        """Quotes of the capable, permitted providers, cheapest first (health not considered)."""
        providers = await self._capable(request, ctx)
        quotes: list[Quote] = []
        for provider in providers:
            try:
                quotes.append(await provider.quote(request))
            except ProviderError as exc:
                self.health.record_failure(provider.name, str(exc))
        return sorted(quotes, key=lambda q: q.usd)

    async def generate(self, request: GenerationRequest, ctx: RouteContext) -> Generation:
        """Buy one generation; fall back along the price-ordered chain; raise if all fail."""
        tried: list[str] = []
        errors: list[str] = []
        attempt = 0
        while True:
            chain = [q for q in await self.quotes(request, ctx) if q.provider not in tried]
            if not chain:
                detail = "; ".join(errors) if errors else "none is capable and permitted"
                raise NoProviderAvailable(f"no provider could generate {request.model}: {detail}")
            ready = [q for q in chain if self.health.available(q.provider)]
            if not ready:
                wait = min(self.health.cooldown_remaining_s(q.provider) for q in chain)
                if self._clock() + wait >= ctx.deadline:
                    raise NoProviderAvailable("every capable provider is cooling down past the deadline")
                await asyncio.sleep(wait)
                continue
            quote = ready[0]
            attempt += 1
            tried.append(quote.provider)
            try:
                return await self._attempt(request, ctx, quote, attempt)
            except ProviderError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    async def _attempt(
        self, request: GenerationRequest, ctx: RouteContext, quote: Quote, attempt: int
    ) -> Generation:
        provider = self._providers[quote.provider]
        if ctx.budget is not None:
            ctx.budget.reserve(quote.usd)  # raises BudgetExceeded before anything is bought
        charged = 0.0
        try:
            generation = await self._call(provider, request, ctx, quote, attempt)
            charged = generation.charged_usd
            return generation
        except ProviderError as exc:
            charged = exc.charged_usd
            raise
        finally:
            if ctx.budget is not None:
                ctx.budget.settle(quote.usd, charged)

    async def _call(
        self, provider: Provider, request: GenerationRequest, ctx: RouteContext, quote: Quote, attempt: int
    ) -> Generation:
        self._ledger.begin_attempt(
            job_id=ctx.job_id,
            request_id=request.request_id,
            attempt=attempt,
            wave=ctx.wave,
            provider=quote.provider,
            model=quote.model,
            quoted_usd=quote.usd,
        )
        started = self._clock()
        timeout = max(0.1, min(self._timeout, ctx.deadline - started))
        try:
            async with asyncio.timeout(timeout):
                generation = await provider.generate(request)
        except (ProviderError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, ProviderError)
                else ProviderTimeout(f"no result within {timeout:.1f}s", provider=quote.provider)
            )
            retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
            self.health.record_failure(quote.provider, str(error), retry_after_s=retry_after)
            self._ledger.end_attempt(
                request_id=request.request_id,
                attempt=attempt,
                status="failed",
                charged_usd=error.charged_usd,
                latency_s=self._clock() - started,
                error=str(error),
                error_type=type(error).__name__,
            )
            if error is exc:
                raise
            raise error from exc
        self.health.record_success(quote.provider, generation.latency_s)
        self._ledger.end_attempt(
            request_id=request.request_id,
            attempt=attempt,
            status="succeeded",
            charged_usd=generation.charged_usd,
            latency_s=self._clock() - started,
            provider_request_id=generation.provider_request_id,
        )
        return generation
