"""Provider configuration from YAML: which adapters to build, where they live, which key to use.

    providers:
      - {name: fal-dev, protocol: fal, models: [fal-ai/flux/dev],
         reference_endpoint: fal-ai/flux/dev/image-to-image}
      - name: rep-schnell
        protocol: replicate
        models: [black-forest-labs/flux-schnell]
        price: {unit: image, usd: 0.003}
      - {name: oai, protocol: openai, models: [gpt-image-1], quality: low}
      - name: tog
        protocol: together
        models: [black-forest-labs/FLUX.1-schnell]
        price: {unit: megapixel, usd: 0.0027}
      - {name: cutout, protocol: removebg, models: [background-removal], price: {unit: image, usd: 0.07}}
      - name: local-cutout           # the self-hosted background remover, run in this process
        protocol: segmentation
        models: [background-removal]
        price: {unit: gpu_second, usd_per_hour: 0.40}
      - name: gpu-1
        protocol: comfyui
        base_url: http://gpu-1:8188
        models: [flux-dev]
        comfyui: {usd_per_hour: 0.45, checkpoint: flux1-dev-fp8.safetensors, seconds_per_step: 0.2}

``base_url`` and ``api_key_env`` default to each protocol's real API and usual variable. A ComfyUI
box has no default address and no auth of its own: its ``api_key_env`` (``COMFYUI_TOKEN``), when
set, goes out as a bearer token for a proxy in front of it; its price is its ``comfyui`` block's.
``segmentation`` is no service at all: the bundled segmentation model on this machine, priced by the
compute time it takes at the machine's ``usd_per_hour``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagefunnel.errors import SpecError
from imagefunnel.providers.base import Provider
from imagefunnel.providers.comfyui import ComfyUIProvider
from imagefunnel.providers.comfyui_settings import ComfyUISettings
from imagefunnel.providers.cutout_api import RemoveBgProvider
from imagefunnel.providers.fal import FalProvider
from imagefunnel.providers.openai_images import OpenAIImagesProvider
from imagefunnel.providers.pricing import PerGpuSecond, PerImage, PerMegapixel, PerToken, PriceModel
from imagefunnel.providers.replicate import ReplicateProvider
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL, local_cutout_provider
from imagefunnel.providers.together import TogetherProvider
from imagefunnel.strict_yaml import read_yaml_file, validate

ProtocolName = Literal["fal", "replicate", "openai", "together", "comfyui", "removebg", "segmentation"]

# (base URL, API key variable) of each protocol's real service.
_DEFAULTS: Mapping[str, tuple[str, str]] = {
    "fal": ("https://queue.fal.run", "FAL_KEY"),
    "replicate": ("https://api.replicate.com", "REPLICATE_API_TOKEN"),
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "comfyui": ("", "COMFYUI_TOKEN"),  # a self-hosted box: its base_url is required
    "removebg": ("https://api.remove.bg", "REMOVE_BG_API_KEY"),  # background removal (price per image)
    "segmentation": ("", ""),  # the self-hosted background remover: in this process, no key
}
Usd = Annotated[float, Field(gt=0)]
# A providers file lists a handful of entries; a bigger one is a mistake or hostile.
_MAX_PROVIDERS_BYTES = 1_000_000


class PriceConfig(BaseModel):
    """A list price: ``usd`` per image, megapixel, GPU-second or 1M output tokens (``input_usd``:
    per 1M input tokens); GPU time may give ``usd_per_hour`` instead, and ``expected_s`` for quotes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: Literal["image", "megapixel", "gpu_second", "token"]
    usd: Usd | None = None
    usd_per_hour: Usd | None = None
    expected_s: Annotated[float, Field(ge=0)] = 5.0
    input_usd: Annotated[float, Field(ge=0)] = 5.0

    @model_validator(mode="after")
    def _one_price(self) -> PriceConfig:
        if (self.usd is None) == (self.usd_per_hour is None):
            raise ValueError("give exactly one of usd and usd_per_hour")
        if self.usd_per_hour is not None and self.unit != "gpu_second":
            raise ValueError("usd_per_hour is for unit gpu_second only")
        return self

    def model(self, quality: Literal["low", "medium", "high"]) -> PriceModel:
        usd = self.usd or 0.0
        if self.unit == "image":
            return PerImage(usd=usd)
        if self.unit == "megapixel":
            return PerMegapixel(usd=usd)
        if self.unit == "token":
            return PerToken(output_usd=usd, input_usd=self.input_usd, quality=quality)
        if self.usd_per_hour is not None:
            return PerGpuSecond(usd_per_hour=self.usd_per_hour, expected_s=self.expected_s)
        return PerGpuSecond.per_second(usd, expected_s=self.expected_s)


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    protocol: ProtocolName
    base_url: str | None = None
    api_key_env: str | None = None
    models: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=120.0, gt=0)
    poll_interval_s: float = Field(default=0.5, gt=0)
    price: PriceConfig | None = None
    quality: Literal["low", "medium", "high"] = "medium"  # openai only
    # fal only: the endpoint that takes a reference photo as ``image_url`` (e.g. ``.../image-to-image``).
    reference_endpoint: str | None = Field(default=None, min_length=1)
    comfyui: ComfyUISettings | None = None  # comfyui only, and required there
    # Requests it runs at once, the rest wait in its queue (a box with two GPUs behind one address:
    # 2). Routing counts the wait behind them and the quote forecasts it; unset: a ComfyUI box 1,
    # the local remover 1 worker, a hosted API learned from its latencies.
    slots: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _priced(self) -> ProviderConfig:
        # fal publishes its prices and OpenAI's default is gpt-image-1's; the others must say.
        if self.protocol == "removebg" and (self.price is None or self.price.unit != "image"):
            raise ValueError("protocol removebg needs a price per image (what one credit costs you)")
        if self.protocol == "segmentation":
            _check_segmentation(self)
        if self.price is None and self.protocol in ("replicate", "together"):
            raise ValueError(f"protocol {self.protocol} needs a price (its API does not report one)")
        if self.price is not None and self.protocol == "fal":
            raise ValueError("fal publishes its prices: the adapter reads them, do not configure one")
        if self.price is not None and self.protocol == "comfyui":
            raise ValueError("a comfyui box is priced by comfyui.usd_per_hour, not by a price block")
        if (self.comfyui is None) == (self.protocol == "comfyui"):
            raise ValueError("a comfyui block is required for protocol comfyui, and only there")
        if self.protocol == "comfyui" and not self.base_url:
            raise ValueError("protocol comfyui needs the box's base_url (e.g. http://gpu-1:8188)")
        if self.reference_endpoint is not None and self.protocol != "fal":
            raise ValueError("reference_endpoint is for protocol fal only")
        return self

    @property
    def url(self) -> str:
        return self.base_url or _DEFAULTS[self.protocol][0]

    @property
    def key_env(self) -> str:
        return self.api_key_env or _DEFAULTS[self.protocol][1]


_KEYLESS = ("comfyui", "segmentation")


def _check_segmentation(config: ProviderConfig) -> None:
    if config.models != [BACKGROUND_REMOVAL_MODEL]:
        raise ValueError(f"protocol segmentation serves models: [{BACKGROUND_REMOVAL_MODEL}] only")
    if config.price is None or config.price.unit != "gpu_second":
        raise ValueError("protocol segmentation needs a gpu_second price (usd_per_hour of this machine)")
    if config.base_url is not None or config.api_key_env is not None:
        raise ValueError("protocol segmentation runs in this process: no base_url or api_key_env")


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderConfig] = Field(min_length=1)


def load_providers_file(path: Path) -> ProvidersFile:
    """Read a providers file strictly; every error is one line, ``FILE:LINE:COL: field: problem``."""
    doc = read_yaml_file(path, what="providers file", max_bytes=_MAX_PROVIDERS_BYTES)
    return validate(ProvidersFile, doc, source=str(path), what="a providers file")


def build_provider(config: ProviderConfig, *, api_key: str | None = None) -> Provider:
    key = api_key if api_key is not None else os.environ.get(config.key_env, "")
    if not key and config.protocol not in _KEYLESS:  # a box without a proxy in front needs no token
        raise SpecError(f"provider {config.name}: environment variable {config.key_env} is not set")
    name, url, model, timeout_s = config.name, config.url, config.models[0], config.timeout_s
    price = config.price.model(config.quality) if config.price is not None else None
    if config.protocol == "fal":
        return FalProvider(
            name=name,
            base_url=url,
            api_key=key,
            model=model,
            poll_interval_s=config.poll_interval_s,
            timeout_s=timeout_s,
            reference_endpoint=config.reference_endpoint,
            slots=config.slots,
        )
    if config.comfyui is not None:
        return ComfyUIProvider.from_settings(
            config.comfyui,
            name=name,
            base_url=url,
            model=model,
            timeout_s=timeout_s,
            poll_interval_s=config.poll_interval_s,
            token=key,
            slots=config.slots or 1,
        )
    if config.protocol == "openai":
        return OpenAIImagesProvider(
            name=name,
            base_url=url,
            api_key=key,
            model=model,
            quality=config.quality,
            price=price,
            timeout_s=timeout_s,
            slots=config.slots,
        )
    if config.protocol == "segmentation" and isinstance(price, PerGpuSecond):
        # Its slots are its worker threads: that many cutouts at once on this machine.
        return local_cutout_provider(
            name=name, usd_per_hour=price.usd_per_hour, workers=config.slots or 1, timeout_s=timeout_s
        )
    if config.protocol == "removebg" and config.price is not None and config.price.usd is not None:
        return RemoveBgProvider(
            name=name,
            base_url=url,
            api_key=key,
            usd_per_credit=config.price.usd,
            timeout_s=timeout_s,
            slots=config.slots,
        )
    if price is None:  # unreachable after validation; keeps the type checker honest
        raise SpecError(f"provider {config.name}: protocol {config.protocol} needs a price")
    if config.protocol == "replicate":
        return ReplicateProvider(
            name=name,
            base_url=url,
            api_token=key,
            model=model,
            price=price,
            poll_interval_s=config.poll_interval_s,
            timeout_s=timeout_s,
            slots=config.slots,
        )
    return TogetherProvider(
        name=name,
        base_url=url,
        api_key=key,
        model=model,
        price=price,
        timeout_s=timeout_s,
        slots=config.slots,
    )
