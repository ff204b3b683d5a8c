"""Adapter for hosted background-removal APIs speaking remove.bg's v1.0 protocol.

``POST {base}/v1.0/removebg`` with ``X-Api-Key`` and the photo as multipart ``image_file``; the answer
is the RGBA PNG itself, with ``X-Credits-Charged`` saying what it cost in credits. The API does not
say what a credit costs: ``usd_per_credit`` is configuration (your plan's price). Only a 200 is
billed, so a cutout that decodes but has no alpha is a ``BadOutput`` that *was* charged.
"""

from __future__ import annotations

import time

import httpx

from imagefunnel.errors import BadOutput, ImageError, ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.imaging import decode_image
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Quote,
    checked_slots,
)
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL

__all__ = ["RemoveBgProvider"]

_MAX_OUTPUT_BYTES = 50_000_000


class RemoveBgProvider:
    """One background-removal API (``base_url`` such as ``https://api.remove.bg``)."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        usd_per_credit: float,
        size: str = "auto",
        timeout_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        slots: int | None = None,
    ) -> None:
        self.name = name
        # Requests it runs at once (a providers file's ``slots``): the router's queue model and the
        # quote's forecast both count on it (``Router.slots``); None: learned from latencies.
        self.slots = checked_slots(slots)
        self._base = base_url.rstrip("/")
        self._headers = {"X-Api-Key": api_key}
        self._usd_per_credit = usd_per_credit
        self._size = size
        self._owns_client = client is None
        self._http = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({BACKGROUND_REMOVAL_MODEL}), supports_reference_images=True)

    async def quote(self, request: GenerationRequest) -> Quote:
        return Quote(
            self.name, request.model, self._usd_per_credit, PriceUnit.PER_IMAGE, self._usd_per_credit
        )

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            response = await self._http.get(f"{self._base}/v1.0/account", headers=self._headers)
        except httpx.HTTPError as exc:
            return Health(ok=False, latency_s=time.monotonic() - started, detail=repr(exc))
        ok = response.status_code == 200
        return Health(ok=ok, latency_s=time.monotonic() - started, detail=f"HTTP {response.status_code}")

    async def generate(self, request: GenerationRequest) -> Generation:
        if not request.reference_images:
            raise BadOutput("background removal needs an input image (the job's source)", provider=self.name)
        started = time.monotonic()
        response = await self._post(request.reference_images[0])
        self._raise_for_status(response)
        credits = _credits(response)
        charged = credits * self._usd_per_credit
        data = response.content
        if len(data) > _MAX_OUTPUT_BYTES:
            raise BadOutput(
                f"output larger than {_MAX_OUTPUT_BYTES} bytes", provider=self.name, charged_usd=charged
            )
        try:
            decoded = decode_image(data)
        except ImageError as exc:
            raise BadOutput(
                f"output is not a usable image: {exc}", provider=self.name, charged_usd=charged
            ) from exc
        if decoded.alpha is None:
            raise BadOutput(
                "output has no alpha channel: not a cutout", provider=self.name, charged_usd=charged
            )
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=request.model,
            image=data,
            charged_usd=charged,
            latency_s=time.monotonic() - started,
            provider_request_id=response.headers.get("x-request-id", f"{self.name}:{request.request_id}"),
            content_type="image/png",
            meta={"credits": repr(credits), "width": response.headers.get("x-width", "")},
        )

    async def _post(self, image: bytes) -> httpx.Response:
        files = {"image_file": ("image", image, "application/octet-stream")}
        form = {"size": self._size, "format": "png"}
        url = f"{self._base}/v1.0/removebg"
        try:
            return await self._http.post(url, headers=self._headers, files=files, data=form)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"POST {url}: {exc!r}", provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"POST {url}: {exc!r}", provider=self.name) from exc

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            return
        title, code = _first_error(response)
        detail = f"HTTP {status} {code}: {title}"
        if status == 429:
            retry = response.headers.get("retry-after")
            raise RateLimited(detail, provider=self.name, retry_after_s=_seconds(retry))
        if status == 400:
            # This photo will not work with this API (no foreground found, unreadable): not billed,
            # and another provider may well manage it.
            raise BadOutput(detail, provider=self.name)
        raise ProviderUnavailable(detail, provider=self.name)  # 402 credits, 403 key, 5xx

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()


def _first_error(response: httpx.Response) -> tuple[str, str]:
    try:
        errors = response.json().get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        return str(first.get("title", "")), str(first.get("code", ""))
    except (ValueError, AttributeError, IndexError):
        return response.text[:120], "unknown"


def _credits(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("x-credits-charged", "1")))
    except ValueError:
        return 1.0  # an unparseable header: assume the list price of one image


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
