"""OpenAI images adapter (gpt-image-1 and kin): ``POST /v1/images/generations`` behind ``Provider``.

Wire facts it relies on:

* one synchronous call answers ``{created, data: [{b64_json}], usage}``: gpt-image models always
  return base64, never URLs, and bill by ``usage`` (input text/image tokens, output tokens);
* sizes are 1024x1024, 1536x1024 and 1024x1536 (the request's aspect picks the nearest), quality
  low/medium/high decides the output tokens;
* errors are ``{"error": {"message", "type", "param", "code"}}``; 429 carries ``Retry-After``;
* ``x-request-id`` names the request (it is the ``provider_request_id``).

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
from imagefunnel.providers.pricing import (
    GPT_IMAGE_SIZES,
    Observed,
    PerToken,
    PriceModel,
    Quality,
    gpt_image_size,
    quote_for,
)

__all__ = ["OpenAIImagesProvider"]

# dall-e models answered with URLs on this blob host; gpt-image models never send URLs.
_FILE_HOSTS = ("oaidalleapiprodscus.blob.core.windows.net",)


class _InputDetails(_http.Wire):
    text_tokens: int = 0
    image_tokens: int = 0


class _Usage(_http.Wire):
    input_tokens: int
    input_tokens_details: _InputDetails | None = None
    output_tokens: int


class _Images(_http.Wire):
    data: list[ImageDatum]
    usage: _Usage | None = None


class OpenAIImagesProvider:
    """One OpenAI image model. ``base_url`` is what the official client takes
    (``https://api.openai.com/v1``); ``price`` defaults to gpt-image-1's token prices."""

    # Its quote is the configured list price, not the live one: a bill may differ (forecast.price_risk).
    quotes_list_price = True

    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        model: str = "gpt-image-1",
        base_url: str = "https://api.openai.com/v1",
        quality: Quality = "medium",
        price: PriceModel | None = None,
        output_format: Literal["png", "jpeg", "webp"] = "png",
        timeout_s: float = 120.0,
        client: httpx.AsyncClient | None = None,
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 40_000_000,
        slots: int | None = None,
    ) -> None:
        if isinstance(price, PerToken) and price.quality != quality:
            raise ValueError(f"price quotes quality {price.quality!r} but images are asked in {quality!r}")
        self.name = name
        # Requests it runs at once (a providers file's ``slots``): the router's queue model and the
        # quote's forecast both count on it (``Router.slots``); None: learned from latencies.
        self.slots = checked_slots(slots)
        self.model = model
        self._price: PriceModel = price or PerToken(quality=quality)
        self._quality = quality
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._output_format = output_format
        self._timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client or _http.client(timeout_s)
        self._limits = (max_image_bytes, max_image_pixels)

    # -- Provider protocol ------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        side = max(max(size) for size in GPT_IMAGE_SIZES)
        return Capabilities(models=frozenset({self.model}), max_width=side, max_height=side)

    async def quote(self, request: GenerationRequest) -> Quote:
        return quote_for(self._price, provider=self.name, model=self.model, request=request)

    async def health(self) -> Health:
        return await probe_models(self._client, self._base, provider=self.name, headers=self._auth)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def generate(self, request: GenerationRequest) -> Generation:
        started = time.monotonic()
        width, height = gpt_image_size(request.width, request.height)
        body: dict[str, object] = {
            "model": self.model,
            "prompt": request.prompt,
            "n": 1,
            "size": f"{width}x{height}",
            "quality": self._quality,
            "output_format": self._output_format,
        }
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
        charged = self._charge(images, request, width, height)
        data = await image_bytes(
            images.data,
            client=self._client,
            provider=self.name,
            base=self._base,
            suffixes=_FILE_HOSTS,
            charged=charged,
            max_bytes=self._limits[0],
        )
        usage = images.usage
        return await _http.finish(
            provider=self.name,
            model=self.model,
            request=request,
            data=data,
            charged=charged,
            started=started,
            provider_request_id=response.headers.get("x-request-id", request.request_id),
            price=self._price,
            limits=self._limits,
            meta={"quality": self._quality} | ({"output_tokens": str(usage.output_tokens)} if usage else {}),
        )

    def _charge(self, images: _Images, request: GenerationRequest, width: int, height: int) -> float:
        """The bill from OpenAI's own ``usage`` (or per image, for a per-image price)."""
        usage = images.usage
        details = usage.input_tokens_details if usage is not None else None
        observed = Observed(
            images=len(images.data),
            width=width,
            height=height,
            input_text_tokens=details.text_tokens if details else (usage.input_tokens if usage else 0),
            input_image_tokens=details.image_tokens if details else 0,
            output_tokens=usage.output_tokens if usage else 0,
        )
        if usage is None and isinstance(self._price, PerToken):
            # No usage to bill from (a non-gpt-image model): keep the estimate, reconciled later.
            return self._price.quote(request)
        return self._price.charge(observed)
