"""A deployed workflow as a provider model (``workflow:NAME``) for the funnel and the router.

A generation request maps onto the workflow's exposed inputs by role: its prompt onto ``prompt``,
its seed onto ``seed``, its size onto ``width``/``height`` and its first reference image onto the
first ``image`` input, where the workflow exposes them; everything else keeps the manifest's
defaults. Quotes are the GPU seconds learned from finished runs x the cheapest server's $/hour.
"""

from __future__ import annotations

import time
from typing import Any

from imagefunnel.errors import BadOutput, ProviderError
from imagefunnel.providers.base import Capabilities, Generation, GenerationRequest, Health, PriceUnit, Quote
from imagefunnel.workflows.manifest import bind_values
from imagefunnel.workflows.pool import ComfyPool
from imagefunnel.workflows.registry import Deployed

__all__ = ["WorkflowProvider"]


class WorkflowProvider:
    def __init__(
        self, *, deployed: Deployed, pool: ComfyPool, name: str | None = None, expected_gpu_s: float = 1.0
    ) -> None:
        self.name = name or f"comfyui-{deployed.name}"
        self._deployed = deployed
        self._pool = pool
        self._expected_s = expected_gpu_s
        inputs = deployed.manifest.inputs
        self._image_input = next((key for key, spec in inputs.items() if spec.type == "image"), None)

    async def capabilities(self) -> Capabilities:
        return Capabilities(
            models=frozenset({self._deployed.model}), supports_reference_images=self._image_input is not None
        )

    async def quote(self, request: GenerationRequest) -> Quote:
        per_second = min(box.usd_per_hour for box in self._pool.boxes) / 3600
        return Quote(
            self.name, request.model, self._expected_s * per_second, PriceUnit.PER_GPU_SECOND, per_second
        )

    async def health(self) -> Health:
        started = time.monotonic()
        healths = [await self._pool.health(box, self._deployed) for box in self._pool.boxes]
        up = [h for h in healths if h.up]
        detail = ", ".join(f"{h.box}: {'up' if h.up else h.detail}" for h in healths)
        return Health(ok=bool(up), latency_s=time.monotonic() - started, detail=detail)

    def _given(self, request: GenerationRequest) -> dict[str, Any]:
        inputs = self._deployed.manifest.inputs
        given: dict[str, Any] = {}
        for key, value in (
            ("prompt", request.prompt),
            ("seed", request.seed),
            ("width", request.width),
            ("height", request.height),
        ):
            if key in inputs and inputs[key].type != "image" and (value or key != "prompt"):
                given[key] = value
        return given

    async def generate(self, request: GenerationRequest) -> Generation:
        started = time.monotonic()
        values = bind_values(self._deployed.manifest, self._given(request))
        images = {}
        if self._image_input is not None and request.reference_images:
            images[self._image_input] = request.reference_images[0]
        try:
            run = await self._pool.run(self._deployed, values, images)
        except ProviderError:
            raise
        if not run.images:
            raise BadOutput(
                f"workflow {self._deployed.name} produced no image", provider=self.name, charged_usd=run.usd
            )
        if run.gpu_seconds > 0:
            self._expected_s += 0.3 * (run.gpu_seconds - self._expected_s)
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=request.model,
            image=run.images[0].data,
            charged_usd=run.usd,
            latency_s=time.monotonic() - started,
            provider_request_id=run.prompt_id,
            meta={"box": run.box, "gpu_seconds": repr(run.gpu_seconds), "version": str(run.version)},
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
