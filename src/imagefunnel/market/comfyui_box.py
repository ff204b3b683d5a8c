"""One emulated ComfyUI GPU box, described as data: its GPU, price, speed and the faults it injects.

Times are *scenario seconds*, like the rest of the market: the server divides wall-clock time by its
``time_factor``. A real box does not report its price; the emulator keeps a billing log of GPU-seconds
times the $/hour in force when each prompt started, so an adapter's charge can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagefunnel.market.defects import Defect
from imagefunnel.market.outage import Outage

__all__ = ["ComfyUIBox", "GpuBillingRecord", "HourlyPrice", "Outcome"]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]
Outcome = Literal["success", "error", "interrupted"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HourlyPrice(_Frozen):
    """From ``after_s`` scenario seconds on, the box costs ``usd_per_hour`` (a spot price change)."""

    after_s: Seconds
    usd_per_hour: Annotated[float, Field(gt=0.0)]


class ComfyUIBox(_Frozen):
    """How one self-hosted ComfyUI server behaves. Every random draw derives from ``seed``."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    seed: int = 0
    gpu_name: str = "NVIDIA H100 80GB HBM3"
    vram_gb: Annotated[float, Field(gt=0.0)] = 80.0
    usd_per_hour: Annotated[float, Field(gt=0.0)] = 2.69
    price_schedule: tuple[HourlyPrice, ...] = ()
    checkpoints: Annotated[tuple[str, ...], Field(min_length=1)] = ("sd_xl_base_1.0.safetensors",)
    # Sampler time per step; a prompt's GPU time is dominated by steps x this.
    seconds_per_step: Seconds = 0.05
    # Loading a checkpoint the first time (then it stays cached, as ComfyUI keeps it in VRAM).
    load_s: Seconds = 3.0
    # Every other node (text encode, VAE, image ops, save).
    node_s: Seconds = 0.01
    defect_rate: Rate = 0.0
    defect_mix: dict[Defect, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {Defect.BLUR: 1.0}
    )
    # What goes wrong with product shots (``None``: the market's DEFAULT_PRODUCT_MIX).
    product_defect_mix: dict[Defect, Annotated[float, Field(ge=0.0)]] | None = None
    # Given a reference photo (img2img), how often the output shows someone else.
    identity_drift_rate: Rate = 0.0
    # A sampler raises mid-run (execution_error, e.g. CUDA out of memory).
    error_rate: Rate = 0.0
    # A sampler stalls at some step until someone interrupts it.
    hang_rate: Rate = 0.0
    # The saved image is black or its PNG bytes are truncated; still GPU time spent.
    garbage_rate: Rate = 0.0
    # Which garbage (``None``: black or truncated, half each).
    garbage_kind: Literal["black", "truncated"] | None = None
    # The box queues the prompt, then the TCP connection of that ``POST /prompt`` is reset before
    # its answer (a proxy or NAT dropping it): the prompt runs and is billed, the client never hears.
    reset_rate: Rate = 0.0
    # The box's address refuses connections (``refused``: the server process is gone) or never
    # completes a handshake (``timeout``: the machine is off or firewalled) for the whole run.
    unreachable: Literal["refused", "timeout"] | None = None
    # The box drops the prompt owner's websocket right after execution_start.
    ws_drop_rate: Rate = 0.0
    # Every HTTP call and websocket handshake answers 503 inside these windows.
    outages: tuple[Outage, ...] = ()
    # Gap between execution_success and the history write (the real server has one too).
    history_delay_s: Seconds = 0.0
    # Binary preview frames (JPEG) after each sampler step, as samplers with previews send them.
    previews: bool = False
    # Node classes this box lacks (a server without some custom or core nodes).
    missing_nodes: tuple[str, ...] = ()

    @field_validator("price_schedule")
    @classmethod
    def _sorted(cls, value: tuple[HourlyPrice, ...]) -> tuple[HourlyPrice, ...]:
        times = [point.after_s for point in value]
        if times != sorted(times):
            raise ValueError("price_schedule must be sorted by after_s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ComfyUIBox:
        if self.defect_rate > 0 and sum(self.defect_mix.values()) <= 0:
            raise ValueError("defect_mix needs a positive weight when defect_rate > 0")
        return self

    def price_at(self, t_s: float) -> float:
        """USD per GPU-hour in force at scenario time ``t_s``."""
        price = self.usd_per_hour
        for point in self.price_schedule:
            if point.after_s <= t_s:
                price = point.usd_per_hour
        return price

    def outage_at(self, t_s: float) -> bool:
        return any(outage.covers(t_s) for outage in self.outages)


@dataclass(frozen=True, slots=True)
class GpuBillingRecord:
    """GPU time one prompt used, and what it cost. Cached nodes cost nothing."""

    box: str
    prompt_id: str
    started_s: float
    gpu_seconds: float
    usd_per_hour: float
    usd: float
    outcome: Outcome
    executed_nodes: tuple[str, ...]
    cached_nodes: tuple[str, ...]
