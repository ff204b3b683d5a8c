"""What the Replicate, OpenAI and Together emulators share: clocks, held requests, output files
(and, with the ComfyUI boxes, the hook that resets a connection).

Headers a client acts on (``Retry-After``, ``Prefer: wait``, ``Cancel-After``) are wall-clock
seconds; the market runs on scenario seconds. The conversions live here so every protocol
scales them the same way by the market's ``time_factor``.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from imagefunnel.market.engine import Job, Market, Phase, Rejection

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "RESET_EXTENSION",
    "file_url",
    "hold",
    "image_bytes",
    "iso",
    "reset_connection",
    "retry_after",
    "serve_file",
    "wall_datetime",
    "wall_seconds",
    "wall_time",
    "with_reset_hook",
]

# The scope extension under which the market's outer app hands endpoints a way to drop the
# connection (see ``server._ByProtocol``): ASGI itself can only answer, never reset.
RESET_EXTENSION = "imagefunnel.market.reset"

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def retry_after(rejection: Rejection) -> dict[str, str]:
    """The Retry-After header of a 429, in whole seconds rounded up (RFC 9110): a client that
    obeys it is never early."""
    if rejection.retry_after_s is None:
        return {}
    return {"Retry-After": str(max(1, int(-(-rejection.retry_after_s // 1))))}


def wall_seconds(market: Market, until_s: float) -> float:
    """Wall-clock seconds from now until scenario time ``until_s`` (0 if it has passed)."""
    return max(0.0, (until_s - market.now_s()) * market.time_factor)


def wall_datetime(market: Market, t_s: float, *, reading: tuple[float, datetime] | None = None) -> datetime:
    """Scenario time ``t_s`` as the UTC wall-clock moment it stands for. ``reading``: one
    (scenario seconds, wall moment) clock reading to count from, so that every timestamp of one
    answer is on the same clock (default: the clocks now)."""
    now_s, now = reading if reading is not None else (market.now_s(), datetime.now(UTC))
    return now + timedelta(seconds=(t_s - now_s) * market.time_factor)


def wall_time(market: Market, t_s: float) -> str:
    """Scenario time ``t_s`` as an ISO-8601 UTC timestamp (what APIs put in ``created_at``)."""
    return iso(wall_datetime(market, t_s))


def iso(moment: datetime) -> str:
    """An aware datetime as APIs write it: ISO-8601 with ``Z`` for UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def hold(request: Request, seconds: float) -> bool:
    """Keep a request open for ``seconds``; ``False`` as soon as the client hangs up (a held
    request must not outlive its client, or server shutdown would wait for it)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({watcher}, timeout=max(0.0, seconds))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return not done


def with_reset_hook(scope: Scope, send: Send) -> Scope:
    """``scope`` with a hook that aborts the connection (an RST): uvicorn's ``send`` is a method of
    the request cycle that holds the asyncio transport. Elsewhere (another server, a test client)
    no hook is added and a reset fault raises instead of answering."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if abort is None:
        return scope
    return {**scope, "extensions": {**(scope.get("extensions") or {}), RESET_EXTENSION: abort}}


async def reset_connection(request: Request) -> Response:
    """Drop the request's TCP connection with an RST instead of answering (a ``connection_reset``
    or a preempted synchronous call): the client sees a reset, never an HTTP status. Without the
    server's hook (an app mounted elsewhere) it raises, so a fault is never silently an answer."""
    reset = (request.scope.get("extensions") or {}).get(RESET_EXTENSION)
    if reset is None:
        raise RuntimeError("this server cannot reset connections")
    reset()
    # Let the server see the connection go before the endpoint returns, so it writes nothing more.
    for _ in range(2):
        await asyncio.sleep(0)
    return Response(status_code=499)  # nobody reads this


async def image_bytes(market: Market, executor: Executor | None, job: Job) -> bytes:
    """The job's encoded output, rendered on ``executor`` (CPU-bound: never on the event loop)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, market.image_bytes, job)


def file_url(request: Request, job: Job) -> str:
    """Where a finished job's output is served: public, under the provider's prefix."""
    root = str(request.base_url).rstrip("/")
    return f"{root}/{job.provider}/files/{job.id}.{EXTENSIONS[job.truth.image_format]}"


async def serve_file(market: Market, executor: Executor | None, request: Request) -> Response:
    """``GET /{provider}/files/{id}.{ext}``: no auth, like a CDN; 404 unless the job succeeded."""
    provider = str(request.path_params["provider"])
    job_id = str(request.path_params["name"]).partition(".")[0]
    job = market.job(provider, job_id) if market.profile(provider) else None
    if job is None or market.phase(job) is not Phase.DONE:
        return Response(b"Not Found", status_code=404, media_type="text/plain")
    data = await image_bytes(market, executor, job)
    return Response(data, media_type=CONTENT_TYPES[job.truth.image_format])
