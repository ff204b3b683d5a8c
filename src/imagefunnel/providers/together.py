"""Together AI images adapter: ``POST /v1/images/generations`` (FLUX and friends) behind ``Provider``.

Wire facts it relies on:

* one synchronous call with ``model, prompt, width, height, steps, n, seed, response_format``
  (``base64`` or ``url``) and ``output_format`` (jpeg, png) answers
  ``{id, model, object: "list", data: [{index, b64_json | url}]}``;
* the answer says nothing about cost: Together bills per megapixel (or per image) of what was asked,
  so the charge is the configured price applied to the requested size;
* errors copy OpenAI's ``{"error": {...}}`` shape; 429 carries ``Retry-After``.

There is no cancel: a timeout is reported with the quote as its probable charge.
"""

from __future__ import annotations

import time
from typing import Literal

import httpx

from imagefunnel.providers import _http
from imagefunnel.providers._images_api import ImageDatum, image_bytes, post_generation, probe_models
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    Quote,
    checked_slots,
)
from imagefunnel.providers.pricing import Observed, PriceModel, quote_for

__all__ = ["TogetherProvider"]

# URL outputs are served by Together's own image proxy (api.together.ai), not arbitrary hosts.
_FILE_HOSTS = (".together.ai", ".together.xyz")


class _Images(_http.Wire):
    id: str
    data: list[ImageDatum]


class TogetherProvider:
    """One Together image model (e.g. ``black-forest-labs/FLUX.1-schnell``). ``base_url`` is what
    the official client takes (``https://api.together.xyz/v1``); ``price`` is the model's list price
    (``PerMegapixel`` or ``PerImage``)."""

    # Its quote is the configured list price, not the live one: a bill may differ (forecast.price_risk).
    quotes_list_price = True

    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        model: str,
        price: PriceModel,
        base_url: str = "https://api.together.xyz/v1",
        steps: int | None = None,
        response_format: Literal["base64", "url"] = "base64",
        output_format: Literal["png", "jpeg"] = "png",
        timeout_s: float = 120.0,
        client: httpx.AsyncClient | None = None,
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 40_000_000,
        slots: int | None = None,
    ) -> None:
        self.name = name
        # Requests it runs at once (a providers file's ``slots``): the router's queue model and the
        # quote's forecast both count on it (``Router.slots``); None: learned from latencies.
        self.slots = checked_slots(slots)
        self.model = model
        self._price = price
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._steps = steps
        self._response_format = response_format
        self._output_format = output_format
        self._timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client or _http.client(timeout_s)
        self._limits = (max_image_bytes, max_image_pixels)

    # -- Provider protocol ------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({self.model}), max_width=2048, max_height=2048)

    async def quote(self, request: GenerationRequest) -> Quote:
        return quote_for(self._price, provider=self.name, model=self.model, request=request)

    async def health(self) -> Health:
        return await probe_models(self._client, self._base, provider=self.name, headers=self._auth)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def generate(self, request: GenerationRequest) -> Generation:
        started = time.monotonic()
        body: dict[str, object] = {
            "model": self.model,
            "prompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "n": 1,
            "seed": request.seed,
            "response_format": self._response_format,
            "output_format": self._output_format,
        }
        if self._steps is not None:
            body["steps"] = self._steps
        response = await post_generation(
            self._client,
            str(self._base.join("images/generations")),
            provider=self.name,
            headers=self._auth,
            body=body,
            timeout_s=self._timeout_s,
            charged_if_lost=self._price.quote(request),
        )
        images = _http.parse(_Images, response, "images", provider=self.name)
        observed = Observed(images=len(images.data), width=request.width, height=request.height)
        charged = self._price.charge(observed)
        data = await image_bytes(
            images.data,
            client=self._client,
            provider=self.name,
            base=self._base,
            suffixes=_FILE_HOSTS,
            charged=charged,
            max_bytes=self._limits[0],
        )
        return await _http.finish(
            provider=self.name,
            model=self.model,
            request=request,
            data=data,
            charged=charged,
            started=started,
            provider_request_id=images.id,
            price=self._price,
            limits=self._limits,
        )
