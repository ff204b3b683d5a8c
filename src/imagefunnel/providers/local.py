"""A provider backed by an in-process worker pool: self-hosted models that run on this machine.

The work function turns a request into encoded image bytes (a segmentation model, a local diffusion
pipeline...). It runs on a bounded pool so the event loop keeps serving other providers; cost is the
measured compute time times the machine's hourly price, like a self-hosted GPU box.

A worker may be *cold*: its model is not in memory (never loaded, or unloaded after ``idle_unload_s``
without work, as a scale-to-zero worker is). Loading is measured (``cold_start_s`` reports the last
load, plus the modelled ``boot_s`` of bringing the machine up) and billed with the next request, since
the machine is paid for while it loads. With ``serve_cold=False`` a cold worker does not make a
request wait: it starts loading in the background and answers like a 503 with ``Retry-After`` (a
``RateLimited``), so the router sends the request elsewhere (an API) until the worker is warm. A
worker with ``max_queue`` requests waiting beyond its ``workers`` is *saturated* and answers the
same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from imagefunnel.errors import BadOutput, ImageError, ProviderTimeout, ProviderUnavailable, RateLimited
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
        load: Callable[[], None] | None = None,
        unload: Callable[[], None] | None = None,
        expected_load_s: float = 1.0,
        boot_s: float = 0.0,
        idle_unload_s: float | None = None,
        serve_cold: bool = True,
        max_queue: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be ≥ 1")
        if max_queue is not None and max_queue < 0:
            raise ValueError("max_queue must be ≥ 0")
        self.name = name
        self._models = models
        self._work = work
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"local-{name}")
        self._usd_per_second = usd_per_hour / 3600.0
        # The quote learns from observed compute times (EWMA), seeded by the operator's estimate.
        self._expected_s = expected_seconds
        self._timeout_s = timeout_s
        self._refs = supports_reference_images
        self._closed = False
        self._load = load
        self._unload = unload
        self._expected_load_s = expected_load_s + boot_s
        self._boot_s = boot_s
        self._idle_unload_s = idle_unload_s
        self._serve_cold = serve_cold
        self._max_queue = max_queue
        self._clock = clock
        self._warm = load is None
        self._loading: asyncio.Task[float] | None = None
        self._unbilled_s = 0.0  # load time not yet charged to a request
        self._in_flight = 0
        self._last_done = clock()
        self.cold_starts = 0
        self.cold_start_s: float | None = None  # the last measured load (boot included)
        self.refused = 0

    @property
    def slots(self) -> int:
        """Requests it runs at once (its workers); the rest wait, or are refused when saturated."""
        return self._workers

    @property
    def warm(self) -> bool:
        return self._warm

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=self._models, supports_reference_images=self._refs)

    async def quote(self, request: GenerationRequest) -> Quote:
        seconds = self._expected_s + self._unbilled_s
        if not self._is_warm_now():
            seconds += self._expected_load_s  # the machine is paid for while the model loads
        usd = seconds * self._usd_per_second
        return Quote(self.name, request.model, usd, PriceUnit.PER_GPU_SECOND, self._usd_per_second)

    async def health(self) -> Health:
        if self._closed:
            return Health(ok=False, latency_s=self._expected_s, detail="closed")
        warm = self._is_warm_now()
        state = "warm" if warm else ("loading" if self._loading is not None else "cold")
        latency = self._expected_s + (0.0 if warm else self._expected_load_s)
        detail = f"{state}, {self._in_flight} in flight on {self._workers} worker(s)"
        return Health(ok=True, latency_s=latency, detail=detail)

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closed:
            raise ProviderUnavailable("worker pool is closed", provider=self.name)
        self._check_capacity()
        started = time.perf_counter()
        self._in_flight += 1
        try:
            await self._ready()
            data, compute_s = await self._compute(request)
        finally:
            self._in_flight -= 1
            self._last_done = self._clock()
        charged = (compute_s + self._unbilled_s) * self._usd_per_second
        self._unbilled_s = 0.0
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
            meta={"compute_s": repr(compute_s)},
        )

    def _check_capacity(self) -> None:
        if self._max_queue is None or self._in_flight < self._workers + self._max_queue:
            return
        self.refused += 1
        wait = self._expected_s * (self._in_flight - self._workers + 1) / self._workers
        raise RateLimited(
            f"saturated: {self._in_flight} requests in flight on {self._workers} worker(s)",
            provider=self.name,
            retry_after_s=wait,
        )

    def _is_warm_now(self) -> bool:
        idle = self._clock() - self._last_done
        if (
            self._warm
            and self._idle_unload_s is not None
            and not self._in_flight
            and idle > self._idle_unload_s
        ):
            self._warm = False  # scaled to zero: the model has left memory
            if self._unload is not None:
                self._pool.submit(self._unload)
        return self._warm

    async def _ready(self) -> None:
        if self._is_warm_now():
            return
        task = self._loading
        if task is None:
            task = self._loading = asyncio.get_running_loop().create_task(self._load_model())
            # A load nobody waits for (every request was refused) must not log "never retrieved".
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        if not self._serve_cold and not task.done():
            self.refused += 1
            raise RateLimited(
                "cold: the model is loading", provider=self.name, retry_after_s=self._expected_load_s
            )
        await asyncio.shield(task)

    async def _load_model(self) -> float:
        started = time.perf_counter()
        try:
            if self._boot_s > 0:
                await asyncio.sleep(self._boot_s)  # modelled: the machine itself coming up
            if self._load is not None:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._load)
        except LocalWorkerError as exc:
            raise ProviderUnavailable(f"model failed to load: {exc}", provider=self.name) from exc
        finally:
            self._loading = None
        seconds = time.perf_counter() - started
        self._warm = True
        self.cold_starts += 1
        self.cold_start_s = seconds
        self._expected_load_s = seconds
        self._unbilled_s += seconds
        self._last_done = self._clock()
        return seconds

    async def _compute(self, request: GenerationRequest) -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._timed, request)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError as exc:
            raise ProviderTimeout(f"no result within {self._timeout_s:.1f}s", provider=self.name) from exc
        except LocalWorkerError as exc:
            raise ProviderUnavailable(f"worker failed: {exc}", provider=self.name) from exc

    def _timed(self, request: GenerationRequest) -> tuple[bytes, float]:
        started = time.perf_counter()
        data = self._work(request)
        return data, time.perf_counter() - started

    async def aclose(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
