"""Configuration records of the ComfyUI adapter (kept apart so the adapter module stays one concern)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ComfyUIEstimate", "ComfyUISettings", "SamplerSettings"]


@dataclass(frozen=True, slots=True)
class SamplerSettings:
    """What a ``GenerationRequest`` does not say but the sampler needs (``None``: the workflow's)."""

    steps: int = 20
    cfg: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    negative_prompt: str = ""
    checkpoint: str | None = None
    denoise: float | None = None  # image-to-image strength


@dataclass(frozen=True, slots=True)
class ComfyUIEstimate:
    """Expected GPU time and cost of a request, and the wait ahead of it in the box's queue."""

    exec_s: float
    queue_depth: int
    queue_wait_s: float
    usd: float

    @property
    def latency_s(self) -> float:
        return self.queue_wait_s + self.exec_s


class ComfyUISettings(BaseModel):
    """The ``comfyui:`` block of a providers file: what a box needs beyond name, URL and model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_hour: float = Field(gt=0)
    workflow: str = "txt2img"
    img2img_workflow: str | None = "img2img"
    steps: int = Field(default=20, ge=1, le=10_000)
    cfg: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    negative_prompt: str = ""
    checkpoint: str | None = None
    denoise: float | None = Field(default=None, ge=0.0, le=1.0)
    seconds_per_step: float = Field(default=0.05, gt=0)

    def sampler(self) -> SamplerSettings:
        return SamplerSettings(
            steps=self.steps,
            cfg=self.cfg,
            sampler_name=self.sampler_name,
            scheduler=self.scheduler,
            negative_prompt=self.negative_prompt,
            checkpoint=self.checkpoint,
            denoise=self.denoise,
        )
