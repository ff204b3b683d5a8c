"""docs/providers.md stays true: every example in it is a providers file that loads and builds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from imagefunnel.providers.comfyui_settings import ComfyUISettings
from imagefunnel.providers.config import (
    PriceConfig,
    ProtocolName,
    ProviderConfig,
    build_provider,
    load_providers_file,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_examples() -> None:
    assert len(_blocks()) >= len(get_args(ProtocolName))


@pytest.mark.parametrize("index", range(len(_blocks())))
async def test_each_example_loads_and_builds(index: int, tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(_blocks()[index], encoding="utf-8")
    configs = load_providers_file(path).providers
    assert len({c.name for c in configs}) == len(configs), "names in one file are distinct"
    for config in configs:
        # Building checks what loading cannot: model names each adapter accepts, workflows found.
        provider = build_provider(config, api_key="k")
        await provider.aclose()


def test_every_protocol_has_an_example(tmp_path: Path) -> None:
    shown: set[str] = set()
    for i, block in enumerate(_blocks()):
        path = tmp_path / f"{i}.yaml"
        path.write_text(block, encoding="utf-8")
        shown |= {c.protocol for c in load_providers_file(path).providers}
    assert shown == set(get_args(ProtocolName))


@pytest.mark.parametrize("model", [ProviderConfig, PriceConfig, ComfyUISettings])
def test_every_field_is_documented(model: type[ProviderConfig | PriceConfig | ComfyUISettings]) -> None:
    text = DOC.read_text(encoding="utf-8")
    for field in model.model_fields:
        assert f"`{field}`" in text, f"{model.__name__}.{field} is not in docs/providers.md"


def test_the_doc_names_only_real_fields() -> None:
    # A field named in a table's first column must exist: a renamed field cannot linger in the doc.
    known = {"providers"} | {
        name for model in (ProviderConfig, PriceConfig, ComfyUISettings) for name in model.model_fields
    }
    named = re.findall(r"^\| `([a-z_]+)`", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert named and set(named) - known - set(get_args(ProtocolName)) == set()
