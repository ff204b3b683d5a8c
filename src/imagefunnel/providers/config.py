"""Provider configuration from YAML: which adapters to build, where they live, which key to use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagefunnel.errors import SpecError
from imagefunnel.providers.base import Provider


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    protocol: Literal["fal"]
    base_url: str = "https://queue.fal.run"
    api_key_env: str = "FAL_KEY"
    models: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=120.0, gt=0)
    poll_interval_s: float = Field(default=0.5, gt=0)


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderConfig] = Field(min_length=1)


def load_providers_file(path: Path) -> ProvidersFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ProvidersFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read providers file: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{path}: {field}: {first['msg']}", field=field) from exc


def build_provider(config: ProviderConfig, *, api_key: str | None = None) -> Provider:
    from imagefunnel.providers.fal import FalProvider

    key = api_key if api_key is not None else os.environ.get(config.api_key_env, "")
    if not key:
        raise SpecError(f"provider {config.name}: environment variable {config.api_key_env} is not set")
    return FalProvider(
        name=config.name,
        base_url=config.base_url,
        api_key=key,
        model=config.models[0],
        poll_interval_s=config.poll_interval_s,
        timeout_s=config.timeout_s,
    )
