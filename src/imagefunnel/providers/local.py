"""A provider backed by an in-process worker pool: self-hosted models that run on this machine.

The work function turns a request into encoded image bytes (a segmentation model, a local diffusion
pipeline...). It runs on a bounded pool so the event loop keeps serving other providers; cost is the
measured compute time times the machine's hourly price, like a self-hosted GPU box.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from imagefunnel.errors import BadOutput, ImageError, ProviderTimeout, ProviderUnavailable
from imagefunnel.imaging import decode_image
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Quote,
)

WorkFn = Callable[[GenerationRequest], bytes]


class LocalWorkerError(Exception):
    """Raise this from a work function to report a failure the router should route around."""


class LocalWorkerProvider:
    def __init__(
        self,
        *,
        name: str,
        models: frozenset[str],
        work: WorkFn,
        workers: int = 1,
        usd_per_hour: float = 0.0,
        expected_seconds: float = 1.0,
        timeout_s: float = 60.0,
        supports_reference_images: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be ≥ 1")
        self.name = name
        self._models = models
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"local-{name}")
        self._usd_per_second = usd_per_hour / 3600.0
        # The quote learns from observed compute times (EWMA), seeded by the operator's estimate.
        self._expected_s = expected_seconds
        self._timeout_s = timeout_s
        self._refs = supports_reference_images
        self._closed = False

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=self._models, supports_reference_images=self._refs)

    async def quote(self, request: GenerationRequest) -> Quote:
        usd = self._expected_s * self._usd_per_second
        return Quote(self.name, request.model, usd, PriceUnit.PER_GPU_SECOND, self._usd_per_second)

    async def health(self) -> Health:
        return Health(
            ok=not self._closed, latency_s=self._expected_s, detail="closed" if self._closed else ""
        )

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closed:
            raise ProviderUnavailable("worker pool is closed", provider=self.name)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        future = loop.run_in_executor(self._pool, self._timed, request)
        try:
            data, compute_s = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(f"no result within {self._timeout_s:.1f}s", provider=self.name) from exc
        except LocalWorkerError as exc:
            raise ProviderUnavailable(f"worker failed: {exc}", provider=self.name) from exc
        charged = compute_s * self._usd_per_second
        self._expected_s = 0.8 * self._expected_s + 0.2 * compute_s
        try:
            # The same "is this a usable image" check as the HTTP adapters apply to downloads.
            fmt = decode_image(data).format
        except ImageError as exc:
            raise BadOutput(
                f"worker returned an unusable image: {exc}", provider=self.name, charged_usd=charged
            ) from exc
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=request.model,
            image=data,
            charged_usd=charged,
            latency_s=time.perf_counter() - started,
            provider_request_id=f"{self.name}:{request.request_id}",
            content_type=f"image/{fmt.lower()}",
        )

    def _timed(self, request: GenerationRequest) -> tuple[bytes, float]:
        started = time.perf_counter()
        data = self._work(request)
        return data, time.perf_counter() - started

    async def aclose(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
