"""An emulated self-hosted ComfyUI GPU box, faithful to what a real 0.3.64 server answered.

In reality each GPU box is its own ComfyUI server; here each ``ComfyUIServer`` is one box on its own
loopback port (start several for several boxes)::

    with ComfyUIServer(ComfyUIBox(name="box-a", usd_per_hour=2.69), time_factor=0.01) as box:
        ComfyUIProvider(name="box-a", base_url=box.url, usd_per_hour=2.69, ...)
        ...
        box.billing()            # GPU-seconds x $/hour per prompt (the box's side of the bill)
        box.truth(prompt_id)     # what the output really is (defects, garbage): tests only

    POST /prompt            {prompt, client_id, [prompt_id], [extra_data]} → {prompt_id, number, node_errors}
                            or 400 {error: {type, message, details, extra_info}, node_errors}
    GET  /ws?clientId=      status, execution_start, execution_cached, progress_state, executing, progress,
                            executed, execution_success | _error | _interrupted, status, executing {node: null}
    GET  /history[/{id}]    {} for a prompt until just before its final executing {node: null}
    GET  /view              a saved file;  POST /upload/image  multipart → {name, subfolder, type}
    POST /interrupt         [{prompt_id}];  GET|POST /queue;  GET /system_stats;  GET /object_info[/{cls}]
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import uvicorn

from imagefunnel.market.comfyui_api import create_comfyui_app
from imagefunnel.market.comfyui_box import ComfyUIBox, GpuBillingRecord, HourlyPrice
from imagefunnel.market.comfyui_runtime import BoxClock, BoxRuntime
from imagefunnel.market.images import AssetLibrary, Truth
from imagefunnel.market.serving import ThreadedServer

__all__ = ["ComfyUIBox", "ComfyUIServer", "GpuBillingRecord", "HourlyPrice", "create_comfyui_app"]


class ComfyUIServer:
    """One box at ``http://127.0.0.1:{port}``; uvicorn runs in its own thread and event loop."""

    def __init__(
        self,
        box: ComfyUIBox,
        *,
        time_factor: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        library: AssetLibrary | None = None,
    ) -> None:
        self.box = box
        self._clock = BoxClock(time_factor)
        self._library = library
        self._host = host
        self._port = port
        self._runtime: BoxRuntime | None = None
        self._serving: ThreadedServer | None = None
        self._bound_port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._serving is not None:
            raise RuntimeError("ComfyUI box already started")
        # One thread: the box executes one node at a time, as a single-GPU ComfyUI does.
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"comfyui-{self.box.name}")
        library = self._library if self._library is not None else AssetLibrary()
        self._runtime = BoxRuntime(self.box, clock=self._clock, library=library, executor=executor)
        config = uvicorn.Config(
            create_comfyui_app(self._runtime),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            ws_max_size=16 * 1024 * 1024,
            timeout_graceful_shutdown=1,
        )
        self._serving = ThreadedServer(
            config, host=self._host, port=self._port, name=f"comfyui-{self.box.name}", executor=executor
        )
        try:
            self._bound_port = self._serving.start()
        except RuntimeError:
            self.stop()
            raise
        self._clock.reset()  # scenario time (outages, spot prices) counts from when the box answers

    def stop(self) -> None:
        """Stop serving and join every thread the box started; safe to call twice."""
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()  # joins the server thread, then shuts its render pool down

    def __enter__(self) -> ComfyUIServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and clock ----------------------------------------------------------------
    @property
    def url(self) -> str:
        """The box's root URL, what a client calls ``http://gpu-box:8188``."""
        if self._bound_port is None:
            raise RuntimeError("ComfyUI box not started")
        return f"http://{self._host}:{self._bound_port}"

    def now_s(self) -> float:
        return self._clock.now_s()

    def advance(self, seconds: float) -> None:
        """Fast-forward the box's scenario clock (into an outage, past a spot price change)."""
        self._clock.advance(seconds)

    def usd_per_hour(self) -> float:
        """The price in force now; a real box does not report it, adapters are told it."""
        return self.box.price_at(self.now_s())

    # -- side channels (tests, benchmarks, the demo's report; never adapters or scorers) ------
    def billing(self) -> list[GpuBillingRecord]:
        return self._runtime_or_raise().store.billing()

    def idle(self) -> bool:
        """Nothing running and nothing queued: every prompt it took is in its billing log."""
        runtime = self._runtime_or_raise()
        return runtime.running is None and not runtime.queue

    def truth(self, prompt_id: str) -> Truth:
        """What a prompt's output image really is; ``KeyError`` if it produced no market picture."""
        return self._runtime_or_raise().store.truth(prompt_id)

    def _runtime_or_raise(self) -> BoxRuntime:
        if self._runtime is None:
            raise RuntimeError("ComfyUI box not started")
        return self._runtime
