"""Test doubles for users of imagefunnel: a provider built from a handler function.

Like ``httpx.MockTransport``: pass a function that turns a request into a ``Generation`` (or raises a
``ProviderError``), and the router treats it as any other provider, with no network involved.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Quote,
)

Handler = Callable[[GenerationRequest], Generation | Awaitable[Generation]]


class MockProvider:
    """A provider whose ``generate`` is ``handler``; priced per image at ``price_usd``."""

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "mock",
        models: frozenset[str] = frozenset({"mock-model"}),
        price_usd: float = 0.01,
        healthy: bool = True,
    ) -> None:
        self.name = name
        self._handler = handler
        self._models = models
        self.price_usd = price_usd
        self.healthy = healthy
        self.calls: list[GenerationRequest] = []

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=self._models)

    async def quote(self, request: GenerationRequest) -> Quote:
        return Quote(self.name, request.model, self.price_usd, PriceUnit.PER_IMAGE, self.price_usd)

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls.append(request)
        out = self._handler(request)
        if inspect.isawaitable(out):
            return await out
        return out

    async def health(self) -> Health:
        return Health(ok=self.healthy, latency_s=0.0)

    async def aclose(self) -> None:
        return None
