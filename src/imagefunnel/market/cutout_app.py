"""Emulated commercial background-removal APIs, speaking remove.bg's v1.0 wire protocol.

    POST /{provider}/v1.0/removebg   X-Api-Key; multipart ``image_file`` (or ``image_file_b64``),
                                     ``size`` (auto|preview|full), ``format`` (auto|png)
        200 image/png (RGBA)         X-Credits-Charged, X-Width, X-Height, X-Type, X-Request-Id
        400 / 402 / 403 / 429 / 5xx  {"errors": [{"title", "code"}]}  (429 with Retry-After)
    GET  /{provider}/v1.0/account    {"data": {"attributes": {"credits": {...}, "api": {...}}}}

One ``CutoutServer`` serves every cutout API of a scenario, each under its own path prefix. Only a
200 is billed (one credit per image), garbage mattes included; the billing log and the truth side
channel (what each answer really was) are for tests and benchmarks, never for adapters or scorers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import uvicorn
from numpy.typing import NDArray
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagefunnel.errors import ImageError
from imagefunnel.imaging import decode_image
from imagefunnel.market.comfyui_runtime import BoxClock
from imagefunnel.market.cutout_matte import MarketMatter, garbage
from imagefunnel.market.cutout_profile import CutoutApiProfile, CutoutBillingRecord, GarbageMatte
from imagefunnel.market.records import derive_rng, job_id
from imagefunnel.market.serving import ThreadedServer

__all__ = ["CutoutServer", "CutoutTruth", "create_cutout_app"]

_MAX_UPLOAD_BYTES = 22 * 1024 * 1024  # remove.bg's documented upload limit


@dataclass(frozen=True, slots=True)
class CutoutTruth:
    provider: str
    garbage: GarbageMatte | None


def _error(status: int, title: str, code: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"errors": [{"title": title, "code": code}]}, status_code=status, headers=headers)


class _Market:
    """State shared by the routes: profiles, counters, the rate limiter, billing and truth."""

    def __init__(
        self, profiles: Sequence[CutoutApiProfile], clock: BoxClock, pool: ThreadPoolExecutor
    ) -> None:
        self.profiles = {profile.name: profile for profile in profiles}
        self.clock = clock
        self.pool = pool
        self.matter = MarketMatter()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._tokens: dict[str, tuple[float, float]] = {}
        self.billing: list[CutoutBillingRecord] = []
        self.truth: dict[str, CutoutTruth] = {}

    def next_number(self, name: str) -> int:
        with self._lock:
            number = self._counts.get(name, 0)
            self._counts[name] = number + 1
            return number

    def admit(self, profile: CutoutApiProfile) -> float | None:
        """None if a call may proceed now, else the seconds to wait (a token bucket of 1 s)."""
        rate = profile.rate_limit_per_s
        if rate is None:
            return None
        now = self.clock.now_s()
        burst = max(1.0, rate)  # a bucket of one second's calls, and at least one
        with self._lock:
            tokens, since = self._tokens.get(profile.name, (burst, now))
            tokens = min(burst, tokens + (now - since) * rate)
            if tokens < 1.0:
                self._tokens[profile.name] = (tokens, now)
                return (1.0 - tokens) / rate
            self._tokens[profile.name] = (tokens - 1.0, now)
            return None

    def bill(self, record: CutoutBillingRecord) -> None:
        with self._lock:
            self.billing.append(record)
            self.truth[record.request_id] = CutoutTruth(record.provider, record.garbage)


def create_cutout_app(market: _Market) -> Starlette:
    async def removebg(request: Request) -> Response:
        profile = market.profiles.get(request.path_params["provider"])
        if profile is None:
            return _error(404, "Unknown endpoint", "not_found")
        if not request.headers.get("x-api-key"):
            return _error(403, "Missing API Key", "auth_failed")
        if profile.outage_at(market.clock.now_s()):
            return _error(503, "Service unavailable", "service_unavailable")
        wait = market.admit(profile)
        if wait is not None:
            return _error(429, "Rate limit exceeded", "rate_limit_exceeded", {"Retry-After": f"{wait:.3f}"})
        data = await _image_bytes(request)
        if data is None:
            return _error(400, "No image given", "missing_source")
        number = market.next_number(profile.name)
        return await _process(market, profile, number, data)

    async def account(request: Request) -> Response:
        if request.path_params["provider"] not in market.profiles:
            return _error(404, "Unknown endpoint", "not_found")
        if not request.headers.get("x-api-key"):
            return _error(403, "Missing API Key", "auth_failed")
        credits = {"total": 10_000, "subscription": 10_000, "payg": 0, "enterprise": 0}
        body = {"data": {"attributes": {"credits": credits, "api": {"free_calls": 50, "sizes": "all"}}}}
        return JSONResponse(body)

    return Starlette(
        routes=[
            Route("/{provider}/v1.0/removebg", removebg, methods=["POST"]),
            Route("/{provider}/v1.0/account", account, methods=["GET"]),
        ]
    )


async def _image_bytes(request: Request) -> bytes | None:
    async with request.form(max_part_size=_MAX_UPLOAD_BYTES) as form:
        upload = form.get("image_file")
        if isinstance(upload, UploadFile):
            return await upload.read()
        encoded = form.get("image_file_b64")
        if isinstance(encoded, str):
            try:
                return base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error):
                return None
    return None


async def _process(market: _Market, profile: CutoutApiProfile, number: int, data: bytes) -> Response:
    rng = derive_rng("cutout", profile.seed, profile.name, number)
    fails_5xx = rng.random() < profile.error_5xx_rate
    unknown = rng.random() < profile.unknown_foreground_rate
    kinds = list(profile.garbage_mix)
    weights = np.array([profile.garbage_mix[k] for k in kinds], dtype=np.float64)
    broken = (
        kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if rng.random() < profile.garbage_rate
        else None
    )
    seconds = float(rng.uniform(*profile.processing_s))
    if fails_5xx:
        return _error(503, "Temporarily unavailable, please retry", "service_unavailable")
    try:
        rgb = decode_image(data).rgb
    except ImageError:
        return _error(400, "Failed to read the image", "invalid_image")
    if unknown:
        return _error(400, "Could not identify foreground in image", "unknown_foreground")
    await asyncio.sleep(seconds * market.clock.time_factor)
    loop = asyncio.get_running_loop()
    png, size = await loop.run_in_executor(
        market.pool, _render, market.matter, rgb, profile.quality, broken, rng
    )
    request_id = job_id("cutout", profile.seed, profile.name, number)
    market.bill(
        CutoutBillingRecord(
            provider=profile.name,
            request_id=request_id,
            credits=1.0,
            usd=profile.usd_per_image,
            garbage=broken,
        )
    )
    headers = {
        "X-Credits-Charged": "1",
        "X-Width": str(size[0]),
        "X-Height": str(size[1]),
        "X-Type": "person",
        "X-Request-Id": request_id,
    }
    return Response(png, media_type="image/png", headers=headers)


def _render(
    matter: MarketMatter,
    rgb: NDArray[np.uint8],
    quality: str,
    broken: GarbageMatte | None,
    rng: np.random.Generator,
) -> tuple[bytes, tuple[int, int]]:
    rgb, matte = matter.cut(rgb, quality=quality)
    if broken is not None:
        matte = garbage(matte, broken, rng)
    out = io.BytesIO()
    Image.fromarray(np.dstack([rgb, matte]), "RGBA").save(out, "PNG", compress_level=3)
    return out.getvalue(), (int(rgb.shape[1]), int(rgb.shape[0]))


class CutoutServer:
    """Every cutout API of a scenario at ``http://127.0.0.1:{port}/{provider}``."""

    def __init__(
        self,
        profiles: Sequence[CutoutApiProfile],
        *,
        time_factor: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = 2,
    ) -> None:
        self._profiles = tuple(profiles)
        self._clock = BoxClock(time_factor)
        self._host = host
        self._port = port
        self._workers = workers
        self._market: _Market | None = None
        self._serving: ThreadedServer | None = None
        self._bound: int | None = None

    def start(self) -> None:
        if self._serving is not None:
            raise RuntimeError("cutout server already started")
        pool = ThreadPoolExecutor(self._workers, thread_name_prefix="cutout-api")
        self._market = _Market(self._profiles, self._clock, pool)
        config = uvicorn.Config(
            create_cutout_app(self._market),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._serving = ThreadedServer(
            config, host=self._host, port=self._port, name="cutout-apis", executor=pool
        )
        self._bound = self._serving.start()
        self._clock.reset()

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()

    def __enter__(self) -> CutoutServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(profile.name for profile in self._profiles)

    def base_url(self, provider: str) -> str:
        """What stands in for ``https://api.remove.bg`` for ``provider``."""
        if self._bound is None:
            raise RuntimeError("cutout server not started")
        if provider not in self.names:
            raise KeyError(f"no cutout API {provider!r} ({', '.join(self.names)})")
        return f"http://{self._host}:{self._bound}/{provider}"

    def profile(self, provider: str) -> CutoutApiProfile:
        return next(p for p in self._profiles if p.name == provider)

    def advance(self, seconds: float) -> None:
        self._clock.advance(seconds)

    # -- side channels: tests and benchmarks only -----------------------------------------
    def billing(self) -> list[CutoutBillingRecord]:
        return list(self._state().billing)

    def truth(self, request_id: str) -> CutoutTruth:
        return self._state().truth[request_id]

    def _state(self) -> _Market:
        if self._market is None:
            raise RuntimeError("cutout server not started")
        return self._market
