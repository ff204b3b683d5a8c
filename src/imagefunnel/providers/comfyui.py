"""Self-hosted ComfyUI adapter: one GPU box behind ``Provider``, plus ``check_server`` for a real one.

One ``generate``:

1. open the websocket ``/ws?clientId=<fresh id>`` *first*, so no message about our prompt is missed;
2. upload the reference image (``/upload/image``, content-addressed name) when the request has one;
3. inject prompt, negative, seed, size, steps, checkpoint and reference into an API-format workflow by
   node role (``comfyui_workflow``) and ``POST /prompt`` it with our own ``prompt_id``;
4. follow the feed until ``executing {node: null}`` for our prompt (other clients' events ignored);
   if the websocket drops, poll ``/history/{id}`` instead;
5. read ``/history/{id}`` and download the output with ``/view``.

A prompt is named at submission (``on_submitted``), so after a crash ``reattach`` polls its history
instead of queueing it again.

A box does not report its price: ``usd_per_hour`` (a number, or a callable for a spot price) is
configuration. ``charged_usd`` = GPU seconds (the server's own execution timestamps) x $/hour, so a
fully cached prompt costs nothing and a failed or interrupted one costs the time it ran.

On timeout or cancellation the prompt is withdrawn: deleted from the queue if it is still pending,
interrupted (``{prompt_id}``-targeted) only if ``/queue`` shows that *it* is the one running, since
``/interrupt`` on older servers stops whatever runs, another client's work included.

An interrupt lands only when the running node (or sampler step) finishes, which can be seconds
later, and the GPU is busy until then. So a withdrawn prompt is charged from the server's own record
as well: the adapter waits (at most ``interrupt_wait_s``, shielded from further cancellation) for
``execution_interrupted`` or success on the websocket or in ``/history``, and charges execution_start
to that end. Without the record in time it charges an upper bound: the time since submission plus
``STOP_GRACE`` of it. A cancelled ``generate`` re-raises ``CancelledError`` carrying that charge
(``abandoned_charge`` reads it), since the caller would otherwise have to guess.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection

from imagefunnel.errors import (
    BadOutput,
    ConnectionLost,
    ImageError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    SpecError,
)
from imagefunnel.imaging import decode_image
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    OnSubmitted,
    PriceUnit,
    Quote,
    Submitted,
    abandoned_charge,
    carry_charge,
    checked_slots,
)
from imagefunnel.providers.comfyui_check import CheckReport, CheckStep, check_server
from imagefunnel.providers.comfyui_client import ComfyUIClient
from imagefunnel.providers.comfyui_settings import ComfyUIEstimate, ComfyUISettings, SamplerSettings
from imagefunnel.providers.comfyui_wire import RunResult, Tracker, error_summary
from imagefunnel.providers.comfyui_workflow import Injection, Workflow, inject, load_workflow

__all__ = [
    "STOP_GRACE",
    "CheckReport",
    "CheckStep",
    "ComfyUIEstimate",
    "ComfyUIProvider",
    "ComfyUISettings",
    "SamplerSettings",
    "abandoned_charge",
    "check_server",
]

# Without the server's record of a withdrawn prompt, the GPU may have run a little past our last
# look: the bound charged is the time since submission plus this share of it.
STOP_GRACE = 0.25
_SNIFF = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"GIF8": "gif"}
_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass
class _Attempt:
    """Where one ``generate`` is, for the code that must withdraw it."""

    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    submitted: bool = False
    submitted_at: float | None = None  # monotonic, just before POST /prompt: no GPU time before it
    price_per_hour: float = 0.0
    charged: float | None = None  # once known: what the prompt cost, whatever comes after
    tracker: Tracker = field(default_factory=Tracker)
    ws: ClientConnection | None = None  # kept open past a timeout, to hear the interrupt land


class ComfyUIProvider:
    """One ComfyUI box (``base_url`` such as ``http://gpu-1:8188``) running ``workflow``."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        usd_per_hour: float | Callable[[], float],
        model: str = "sdxl",
        workflow: str | Path | Workflow = "txt2img",
        img2img_workflow: str | Path | Workflow | None = "img2img",
        sampler: SamplerSettings | None = None,
        seconds_per_step: float = 0.05,
        timeout_s: float = 300.0,
        poll_interval_s: float = 0.5,
        queue_ttl_s: float = 1.0,
        interrupt_wait_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 40_000_000,
        max_side: int = 2048,
        slots: int = 1,
    ) -> None:
        self.name = name
        # A box runs one prompt at a time and queues the rest (several behind one address: say so).
        self.slots = checked_slots(slots)
        self.model = model
        self._price = usd_per_hour if callable(usd_per_hour) else (lambda: float(usd_per_hour))
        self._workflow = _workflow(workflow)
        self._img2img = _workflow(img2img_workflow) if img2img_workflow is not None else None
        self._sampler = sampler or SamplerSettings()
        self._timeout_s = timeout_s
        self._queue_ttl_s = queue_ttl_s
        # How long a withdrawal waits for the server to say where the interrupt landed (a real box
        # took ~1 s during a long node; a checkpoint load or a large VAE decode can take longer).
        self._interrupt_wait_s = interrupt_wait_s
        self._withdrawals: set[asyncio.Task[float]] = set()
        self._owns_client = client is None
        self._http = client or httpx.AsyncClient(timeout=httpx.Timeout(min(30.0, timeout_s)))
        self._api = ComfyUIClient(
            provider=name,
            base_url=base_url,
            client=self._http,
            headers=headers,
            poll_interval_s=poll_interval_s,
        )
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._max_side = max_side
        # Seconds per sampler step, learned from finished prompts (EWMA), seeded by configuration.
        self._seconds_per_step = seconds_per_step
        self._ewma_alpha = 0.3
        self._queue_depth: tuple[float, int] | None = None
        # Fail at configuration time, not on the first request, if a workflow lacks a role.
        probe = GenerationRequest(request_id="probe", model=model, prompt="probe", reference_images=(b"",))
        inject(self._workflow, self._injection(probe, None))
        if self._img2img is not None:
            inject(self._img2img, self._injection(probe, "probe.png"))

    @classmethod
    def from_settings(
        cls,
        settings: ComfyUISettings,
        *,
        name: str,
        base_url: str,
        model: str,
        timeout_s: float = 300.0,
        poll_interval_s: float = 0.5,
        token: str = "",
        slots: int = 1,
    ) -> ComfyUIProvider:
        """The adapter a providers file describes; ``token`` (if any) goes out as a bearer token,
        for boxes behind an authenticating proxy (ComfyUI itself has no auth)."""
        return cls(
            name=name,
            base_url=base_url,
            usd_per_hour=settings.usd_per_hour,
            model=model,
            workflow=settings.workflow,
            img2img_workflow=settings.img2img_workflow,
            sampler=settings.sampler(),
            seconds_per_step=settings.seconds_per_step,
            timeout_s=timeout_s,
            poll_interval_s=poll_interval_s,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            slots=slots,
        )

    # -- Provider protocol ------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        return Capabilities(
            models=frozenset({self.model}),
            max_width=self._max_side,
            max_height=self._max_side,
            supports_reference_images=self._img2img is not None,
        )

    async def quote(self, request: GenerationRequest) -> Quote:
        estimate = await self.estimate(request)
        per_second = self._price() / 3600
        return Quote(self.name, self.model, estimate.usd, PriceUnit.PER_GPU_SECOND, per_second)

    async def estimate(self, request: GenerationRequest) -> ComfyUIEstimate:
        """Expected GPU seconds (learned per step) x $/hour, and the queue ahead (``/queue``)."""
        exec_s = self._sampler.steps * self._seconds_per_step
        depth = await self._depth()
        usd = exec_s * self._price() / 3600
        return ComfyUIEstimate(exec_s=exec_s, queue_depth=depth, queue_wait_s=depth * exec_s, usd=usd)

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            stats = await self._api.get_json("system_stats", "system_stats")
            queue = await self._api.queue()
        except ProviderError as exc:
            return Health(ok=False, latency_s=time.monotonic() - started, detail=str(exc))
        self._queue_depth = (time.monotonic(), queue.depth)
        system = stats.get("system") if isinstance(stats.get("system"), dict) else {}
        version = system.get("comfyui_version", "?") if system else "?"
        devices = stats.get("devices") if isinstance(stats.get("devices"), list) else None
        device = devices[0] if devices and isinstance(devices[0], dict) else {}
        free_gib = float(device.get("vram_free") or 0) / 2**30
        detail = (
            f"ComfyUI {version} on {device.get('name', '?')}, {free_gib:.1f} GiB VRAM free, "
            f"queue {len(queue.running)} running + {len(queue.pending)} pending"
        )
        return Health(ok=True, latency_s=time.monotonic() - started, detail=detail)

    async def aclose(self) -> None:
        # Withdrawals still waiting for their interrupt to land (each bounded) finish first: closing
        # the client under them would leave a prompt running that nobody stops.
        if self._withdrawals:
            await asyncio.wait(set(self._withdrawals))
        if self._owns_client:
            await self._http.aclose()

    async def generate(
        self, request: GenerationRequest, *, on_submitted: OnSubmitted | None = None
    ) -> Generation:
        started = time.monotonic()
        attempt = _Attempt(price_per_hour=self._price())
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self._run(request, attempt, on_submitted)
                try:
                    charged = attempt.charged = self._charge(result, attempt)
                except ProviderError as failed:
                    attempt.charged = failed.charged_usd
                    raise
                data = await self._output(result, charged)
        except (TimeoutError, ProviderTimeout) as exc:
            charged = attempt.charged = await self._withdraw(attempt)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        except asyncio.CancelledError as cancelled:
            # A hedged or abandoned request: stop the GPU work, and say what it cost.
            attempt.charged = await self._withdraw(attempt)
            carry_charge(cancelled, attempt.charged)
            raise
        finally:
            await self._close_carrying(attempt)
        try:
            return await self._generation(request, result, attempt, data, charged, started)
        except asyncio.CancelledError as late:
            carry_charge(late, charged)  # cut off while decoding: the prompt is paid for all the same
            raise

    async def _close_carrying(self, attempt: _Attempt) -> None:
        """Close the websocket. A cancellation that lands here comes after the outcome is known
        (a caller's timeout while the socket closes): it carries that charge, or the bound, so the
        router does not book a prompt the box billed as free."""
        try:
            await _close(attempt)
        except asyncio.CancelledError as late:
            if abandoned_charge(late) is None:
                known = attempt.charged
                if known is None:
                    known = self._bound(attempt) if attempt.submitted else 0.0
                carry_charge(late, known)
            raise

    async def reattach(self, request: GenerationRequest, provider_request_id: str) -> Generation:
        """Follow a prompt queued earlier (by a process that died) to its end, by polling
        ``/history/{prompt_id}``; charged from the server's own execution timestamps."""
        started = time.monotonic()
        attempt = _Attempt(
            prompt_id=provider_request_id,
            submitted=True,
            submitted_at=started,  # queued by the dead process, earlier: a bound from here is low
            price_per_hour=self._price(),
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self._api.wait(None, provider_request_id, attempt.tracker)
                charged = self._charge(result, attempt)
                data = await self._output(result, charged)
        except (TimeoutError, ProviderTimeout) as exc:
            charged = await self._withdraw(attempt)
            raise ProviderTimeout(
                f"no result within {self._timeout_s:g} s", provider=self.name, charged_usd=charged
            ) from exc
        # Cancelled (Ctrl-C during a resume): the prompt is left to run, for the next resume to find.
        return await self._generation(request, result, attempt, data, charged, started)

    async def _generation(
        self,
        request: GenerationRequest,
        result: RunResult,
        attempt: _Attempt,
        data: bytes,
        charged: float,
        started: float,
    ) -> Generation:
        content_type, width, height = await self._inspect(data, charged)
        self._learn(result)
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=self.model,
            image=data,
            charged_usd=charged,
            latency_s=time.monotonic() - started,
            provider_request_id=result.prompt_id,
            content_type=content_type,
            meta={
                "seed": str(request.seed),
                "width": str(width),
                "height": str(height),
                "gpu_seconds": repr(result.gpu_seconds or 0.0),
                "usd_per_hour": repr(attempt.price_per_hour),
                "price_unit": PriceUnit.PER_GPU_SECOND.value,
                "cached_nodes": str(len(result.cached_nodes)),
                "via": result.via,
            },
        )

    # -- steps ------------------------------------------------------------------------------
    async def _run(
        self, request: GenerationRequest, attempt: _Attempt, on_submitted: OnSubmitted | None
    ) -> RunResult:
        # The websocket stays open if we are stopped before the end: the withdrawal listens on it
        # for the interrupt to land; ``generate`` closes it either way.
        attempt.ws = await self._api.connect(attempt.client_id)
        image = await self._upload_reference(request) if request.reference_images else None
        try:
            graph = inject(self._workflow_for(request), self._injection(request, image))
        except SpecError as exc:
            raise ProviderUnavailable(str(exc), provider=self.name) from exc
        attempt.submitted = True  # from here on, a withdrawal must look for our prompt
        attempt.submitted_at = time.monotonic()
        try:
            attempt.prompt_id = await self._api.submit(
                graph, client_id=attempt.client_id, prompt_id=attempt.prompt_id
            )
        except ConnectionLost as exc:
            await self._lost_submit(attempt, exc)  # raises unless the box queued it under our id
        if on_submitted is not None:  # queued: a crash from here on is recoverable
            on_submitted(Submitted(request.request_id, self.name, attempt.prompt_id))
        # Closed by ``generate`` once the charge is known: a cancellation during the close then
        # carries that charge instead of starting a withdrawal of a prompt that has already ended.
        return await self._api.wait(attempt.ws, attempt.prompt_id, attempt.tracker)

    async def _lost_submit(self, attempt: _Attempt, lost: ConnectionLost) -> None:
        """The ``POST /prompt`` connection dropped before its answer. The prompt id is ours, so the
        box can say whether it took the prompt: queued, running or in its history, it is followed
        like any other (and billed by the box's record); nowhere, it was never queued and costs
        nothing. If the box cannot be asked, the prompt is withdrawn like a timed-out one."""
        try:
            state = await self._api.queue()
            taken = attempt.prompt_id in state.pending or attempt.prompt_id in state.running
            taken = taken or await self._api.history(attempt.prompt_id) is not None
        except ProviderError as exc:
            charged = await self._withdraw(attempt)
            detail = f"{lost.args[0]}; the box could not say whether it queued the prompt: {exc}"
            raise ConnectionLost(detail, provider=self.name, charged_usd=charged) from lost
        if not taken:
            attempt.submitted = False
            detail = f"{lost.args[0]} (prompt {attempt.prompt_id} is not on the box: never queued)"
            raise ConnectionLost(detail, provider=self.name) from lost

    def _workflow_for(self, request: GenerationRequest) -> Workflow:
        if not request.reference_images:
            return self._workflow
        if self._img2img is None:
            raise ProviderUnavailable("no image-to-image workflow configured", provider=self.name)
        return self._img2img

    def _injection(self, request: GenerationRequest, image: str | None) -> Injection:
        s = self._sampler
        return Injection(
            prompt=request.prompt,
            negative=s.negative_prompt or None,  # "": keep the workflow's own (it may have none)
            seed=request.seed,
            width=request.width,
            height=request.height,
            steps=s.steps,
            cfg=s.cfg,
            sampler_name=s.sampler_name,
            scheduler=s.scheduler,
            denoise=s.denoise if image is not None else None,
            checkpoint=s.checkpoint,
            image=image,
        )

    async def _upload_reference(self, request: GenerationRequest) -> str:
        data = request.reference_images[0]
        extension = next((ext for magic, ext in _SNIFF.items() if data.startswith(magic)), "png")
        # Content-addressed: re-uploading the same reference is harmless, and names never clash.
        name = f"ref_{hashlib.sha256(data).hexdigest()[:24]}.{extension}"
        return await self._api.upload_image(data, name, subfolder="imagefunnel")

    def _charge(self, result: RunResult, attempt: _Attempt) -> float:
        charged = self._cost(result, attempt)
        if result.status != "success":
            raise ProviderUnavailable(error_summary(result), provider=self.name, charged_usd=charged)
        return charged

    async def _output(self, result: RunResult, charged: float) -> bytes:
        images = sorted(result.images, key=lambda image: image.type != "output")  # saved before previews
        if not images:
            raise BadOutput(
                f"prompt {result.prompt_id} produced no image", provider=self.name, charged_usd=charged
            )
        return await self._api.view(images[0], max_bytes=self._max_image_bytes, charged=charged)

    async def _inspect(self, data: bytes, charged: float) -> tuple[str, int, int]:
        try:
            # Decoding is CPU-bound: keep it off the event loop that runs every other request.
            decoded = await asyncio.to_thread(
                decode_image, data, max_bytes=self._max_image_bytes, max_pixels=self._max_image_pixels
            )
        except ImageError as exc:
            detail = f"output is not a usable image: {exc}"
            raise BadOutput(detail, provider=self.name, charged_usd=charged) from exc
        if not np.any(decoded.rgb):
            # All black: what a safety checker or a NaN in the VAE leaves behind.
            raise BadOutput("output image is entirely black", provider=self.name, charged_usd=charged)
        height, width = decoded.rgb.shape[:2]
        return _CONTENT_TYPES.get(decoded.format, "application/octet-stream"), width, height

    def _cost(self, result: RunResult, attempt: _Attempt) -> float:
        """GPU seconds by the server's own timestamps x the $/hour in force when our prompt ran."""
        if attempt.tracker.running_since is not None:
            attempt.price_per_hour = self._price()  # a spot price in force when our prompt started
        return (result.gpu_seconds or 0.0) * attempt.price_per_hour / 3600

    def _learn(self, result: RunResult) -> None:
        if result.gpu_seconds is None or not result.gpu_seconds or self._sampler.steps <= 0:
            return  # a fully cached prompt is free and instant: it says nothing about a fresh one
        observed = result.gpu_seconds / self._sampler.steps
        self._seconds_per_step += self._ewma_alpha * (observed - self._seconds_per_step)

    async def _depth(self) -> int:
        cached = self._queue_depth
        if cached is not None and time.monotonic() - cached[0] < self._queue_ttl_s:
            return cached[1]
        depth = (await self._api.queue()).depth
        self._queue_depth = (time.monotonic(), depth)
        return depth

    async def _withdraw(self, attempt: _Attempt) -> float:
        """Withdraw our prompt and return what it cost, by the server's record when it comes in time.

        The withdrawal runs as its own task, so that a second cancellation (a hedge cut short, Ctrl-C
        cancelling every task) neither stops the interrupt from being sent nor leaves its errors
        unretrieved: the caller gets the upper bound, and the task finishes on its own."""
        if not attempt.submitted:
            return 0.0
        task = asyncio.create_task(self._abandon(attempt))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError as again:
            carry_charge(again, self._bound(attempt))
            raise

    async def _abandon(self, attempt: _Attempt) -> float:
        """Delete our prompt if pending, interrupt it only if it is the one running, then wait for
        the server to say where the interrupt landed (or that the prompt ended anyway)."""
        try:
            async with asyncio.timeout(self._interrupt_wait_s):
                if not await self._stop(attempt):
                    return 0.0
                result = await self._api.wait(attempt.ws, attempt.prompt_id, attempt.tracker)
        except (TimeoutError, ProviderError):
            return self._bound(attempt)  # no record in time: charge what it can have cost so far
        return self._cost(result, attempt)

    async def _stop(self, attempt: _Attempt) -> bool:
        """Stop our prompt; ``False`` if it never ran (deleted while pending, or never queued)."""
        state = await self._api.queue()
        if attempt.prompt_id in state.pending:
            await self._api.delete(attempt.prompt_id)
            state = await self._api.queue()  # it may have started meanwhile
        if attempt.prompt_id in state.running:
            await self._api.interrupt(attempt.prompt_id)
            return True
        # Neither pending nor running: it ended by itself (its record is in history) or never ran.
        if attempt.tracker.running_since is not None:
            return True
        return await self._api.history(attempt.prompt_id) is not None

    def _bound(self, attempt: _Attempt) -> float:
        """What the prompt can have cost by now: it cannot have run longer than since submission."""
        since = attempt.submitted_at
        seconds = time.monotonic() - since if since is not None else 0.0
        return seconds * (1 + STOP_GRACE) * attempt.price_per_hour / 3600


async def _close(attempt: _Attempt) -> None:
    ws, attempt.ws = attempt.ws, None
    if ws is not None:
        await ws.close()


def _workflow(value: str | Path | Workflow) -> Workflow:
    return value if isinstance(value, Workflow) else load_workflow(value)
