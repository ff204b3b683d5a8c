"""``MarketServer``: the emulated market on a loopback port, in a background thread.

    with MarketServer("demo", time_factor=0.1) as market:
        provider = FalProvider(name="budget", base_url=market.base_url("budget"), api_key="k", ...)
        ...
        market.billing(), market.truth(generation.provider_request_id)

uvicorn runs in its own thread with its own event loop, so the server works the same under a sync
test, an async test (any loop) or a CLI. The socket is bound before the thread starts, so the port
is known at once; ``stop()`` joins the thread and the render pool, leaving no threads behind.

The scenario's self-hosted ComfyUI boxes each get a ``ComfyUIServer`` of their own (a real box is its
own server), on the same clock pace and sharing the market's portrait library; ``base_url(box)``
is the box's root and ``truth`` answers for its prompts too.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from imagefunnel.market._shared import with_reset_hook
from imagefunnel.market.comfyui_app import ComfyUIServer, GpuBillingRecord
from imagefunnel.market.cutout_app import CutoutServer
from imagefunnel.market.engine import BillingRecord, Market, ProviderStats
from imagefunnel.market.fal_app import create_fal_app
from imagefunnel.market.faults import UnreachableFault
from imagefunnel.market.images import AssetLibrary, Truth
from imagefunnel.market.openai_app import create_openai_app
from imagefunnel.market.replicate_app import create_replicate_app
from imagefunnel.market.scenario import Scenario, load_scenario
from imagefunnel.market.serving import ThreadedServer

__all__ = ["MarketServer"]


class _ByProtocol:
    """Send ``/{provider}/...`` to the app of that provider's protocol; everything else (the shared
    ``/files`` and ``/_market`` routes, unknown paths) to ``fallback``."""

    def __init__(self, market: Market, apps: Mapping[str, ASGIApp], *, fallback: ASGIApp) -> None:
        self._market = market
        self._apps = apps
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = with_reset_hook(scope, send)
        provider = str(scope.get("path", "")).lstrip("/").partition("/")[0]
        profile = self._market.profile(provider)
        app = self._apps.get(profile.protocol) if profile is not None else None
        await (app or self._fallback)(scope, receive, send)


def create_market_app(market: Market, *, executor: ThreadPoolExecutor | None = None) -> ASGIApp:
    """One ASGI app for every provider of ``market``, whatever its wire protocol."""
    fal = create_fal_app(market, executor=executor)
    images = create_openai_app(market, executor=executor)
    apps = {
        "fal": fal,
        "replicate": create_replicate_app(market, executor=executor),
        "openai": images,
        "together": images,
    }
    return _ByProtocol(market, apps, fallback=fal)


class _DeadAddress:
    """A port nobody answers on: bound but not listening (the kernel refuses every connection), or
    listening with its backlog filled by connections never accepted (the kernel then drops every
    further handshake: a connect timeout)."""

    def __init__(self, host: str, mode: str) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.port = int(self._sock.getsockname()[1])
        self._fillers: list[socket.socket] = []
        if mode == "timeout":
            self._sock.listen(0)
            for _ in range(2):  # Linux admits backlog + 1 before it drops handshakes
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                filler.connect_ex((host, self.port))
                self._fillers.append(filler)

    def close(self) -> None:
        for sock in (*self._fillers, self._sock):
            sock.close()


class MarketServer:
    """Serve every provider of ``scenario`` at ``http://127.0.0.1:{port}/{provider}``, and each of
    its ComfyUI boxes on a port of its own. ``time_factor`` defaults to the scenario's."""

    def __init__(
        self,
        scenario: Scenario | str | Path,
        *,
        time_factor: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        render_workers: int = 2,
        library: AssetLibrary | None = None,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        pace = self.scenario.time_factor if time_factor is None else time_factor
        shared = library if library is not None else AssetLibrary()
        self.market = Market(self.scenario, time_factor=pace, library=shared)
        self._boxes = {
            box.name: ComfyUIServer(box, time_factor=pace, host=host, library=shared)
            for box in self.scenario.comfyui_boxes
        }
        self._cutouts = (
            CutoutServer(self.scenario.cutout_apis, time_factor=pace, host=host)
            if self.scenario.cutout_apis
            else None
        )
        self._host = host
        self._port = port
        self._render_workers = render_workers
        self._serving: ThreadedServer | None = None
        self._bound_port: int | None = None
        self._dead: dict[str, _DeadAddress] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._serving is not None:
            raise RuntimeError("market server already started")
        executor = ThreadPoolExecutor(self._render_workers, thread_name_prefix="market-render")
        app = create_market_app(self.market, executor=executor)
        # log_config=None: uvicorn must not reconfigure the host process's logging.
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._serving = ThreadedServer(
            config, host=self._host, port=self._port, name="market-server", executor=executor
        )
        try:
            self._bound_port = self._serving.start()
        except RuntimeError:
            self.stop()
            raise
        try:
            for box in self._boxes.values():
                box.start()  # each resets its own clock when it answers: within ms of the market's
            if self._cutouts is not None:
                self._cutouts.start()
        except RuntimeError:
            self.stop()
            raise
        for profile in self.scenario.providers:
            fault = next((f for f in profile.faults if isinstance(f, UnreachableFault)), None)
            if fault is not None:
                self._dead[profile.name] = _DeadAddress(self._host, fault.mode)
        for hosted in self.scenario.comfyui_boxes:
            if hosted.unreachable is not None:
                self._dead[hosted.name] = _DeadAddress(self._host, hosted.unreachable)
        # Scenario time (outages, price schedule) counts from when the market opens, not from __init__.
        self.market.reset_clock()

    def stop(self) -> None:
        """Stop serving and join every thread the server started; safe to call twice."""
        for box in self._boxes.values():
            box.stop()
        if self._cutouts is not None:
            self._cutouts.stop()
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()  # joins the server thread, then shuts its render pool down
        dead, self._dead = self._dead, {}
        for address in dead.values():
            address.close()

    def __enter__(self) -> MarketServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:54321``."""
        if self._bound_port is None:
            raise RuntimeError("market server not started")
        return f"http://{self._host}:{self._bound_port}"

    def base_url(self, provider: str) -> str:
        """What stands in for the provider's API root: ``https://queue.fal.run`` (and
        ``https://api.fal.ai``), ``https://api.replicate.com``, ``https://api.openai.com`` or
        ``https://api.together.xyz`` (OpenAI-style clients append ``/v1``); for a ComfyUI box, the
        box's root (``http://gpu-box:8188``)."""
        if provider in self._boxes:
            if provider in self._dead:  # an unreachable box: what its owner configured, nobody there
                return f"http://{self._host}:{self._dead[provider].port}"
            return self._boxes[provider].url
        if self._cutouts is not None and provider in self._cutouts.names:
            return self._cutouts.base_url(provider)  # stands in for https://api.remove.bg
        if self.market.profile(provider) is None:
            known = ", ".join([p.name for p in self.scenario.providers] + list(self._boxes))
            raise KeyError(f"no provider {provider!r} in scenario {self.scenario.name!r} ({known})")
        if provider in self._dead:  # an ``unreachable`` provider: a port that refuses or never answers
            return f"http://{self._host}:{self._dead[provider].port}/{provider}"
        return f"{self.url}/{provider}"

    @property
    def cutouts(self) -> CutoutServer:
        """The scenario's background-removal APIs (``KeyError`` when it has none)."""
        if self._cutouts is None:
            raise KeyError(f"scenario {self.scenario.name!r} has no cutout_apis")
        return self._cutouts

    def box(self, name: str) -> ComfyUIServer:
        """The running server of the scenario's ComfyUI box ``name``."""
        return self._boxes[name]

    # -- side channels (tests, benchmarks, the demo's report; never adapters or scorers) ------
    def truth(self, provider_request_id: str) -> Truth:
        """What a request (a hosted provider's request id or a box's prompt id) really produced."""
        try:
            return self.market.truth(provider_request_id)
        except KeyError:
            pass
        for box in self._boxes.values():
            try:
                return box.truth(provider_request_id)
            except KeyError:
                continue
        raise KeyError(provider_request_id)

    def billing(self) -> list[BillingRecord]:
        return self.market.billing()

    def gpu_billing(self) -> list[GpuBillingRecord]:
        """The boxes' side of the bill: GPU seconds x $/hour per prompt, every box."""
        return [record for box in self._boxes.values() for record in box.billing()]

    def stats(self) -> Mapping[str, ProviderStats]:
        return self.market.stats()

    def advance(self, seconds: float) -> None:
        """Fast-forward the scenario clock (into an outage, past a price change...), boxes included."""
        self.market.advance(seconds)
        for box in self._boxes.values():
            box.advance(seconds)
        if self._cutouts is not None:
            self._cutouts.advance(seconds)

    def now_s(self) -> float:
        return self.market.now_s()
