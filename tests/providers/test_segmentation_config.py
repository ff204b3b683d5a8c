"""The self-hosted background remover as a providers-file entry (protocol ``segmentation``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.providers.base import GenerationRequest, PriceUnit
from imagefunnel.providers.config import build_provider, load_providers_file

ENTRY = "  - {name: local-cutout, protocol: segmentation, models: [background-removal]"


def _load(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(f"providers:\n{entry}\n", encoding="utf-8")
    return path


async def test_it_needs_no_key_and_is_priced_by_compute_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REMOVE_BG_API_KEY", raising=False)
    path = _load(tmp_path, ENTRY + ", price: {unit: gpu_second, usd_per_hour: 0.36}}")
    [config] = load_providers_file(path).providers
    provider = build_provider(config)  # no environment variable to read
    try:
        assert (await provider.capabilities()).models == frozenset({"background-removal"})
        request = GenerationRequest(request_id="r", model="background-removal", prompt="")
        quote = await provider.quote(request)
        assert quote.unit == PriceUnit.PER_GPU_SECOND
        assert quote.unit_price_usd == pytest.approx(0.36 / 3600)
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (ENTRY + "}", "needs a gpu_second price"),
        (ENTRY + ", price: {unit: image, usd: 0.01}}", "needs a gpu_second price"),
        (
            "  - {name: l, protocol: segmentation, models: [fal-ai/flux/dev],"
            " price: {unit: gpu_second, usd_per_hour: 0.4}}",
            "serves models: [background-removal] only",
        ),
        (
            ENTRY + ", base_url: 'http://x', price: {unit: gpu_second, usd_per_hour: 0.4}}",
            "no base_url or api_key_env",
        ),
    ],
)
def test_a_misconfigured_entry_is_refused_in_one_line(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_providers_file(_load(tmp_path, entry))
    assert "\n" not in str(info.value)
