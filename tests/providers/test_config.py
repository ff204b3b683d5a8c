"""Provider config files build the adapter of each protocol; one market serves every protocol."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.errors import SpecError
from imagefunnel.market import MarketServer, ProviderProfile, Scenario
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.comfyui import ComfyUIProvider
from imagefunnel.providers.config import build_provider, load_providers_file
from imagefunnel.providers.fal import FalProvider
from imagefunnel.providers.openai_images import OpenAIImagesProvider
from imagefunnel.providers.replicate import ReplicateProvider
from imagefunnel.providers.together import TogetherProvider

PROVIDERS_YAML = """
providers:
  - {name: f, protocol: fal, models: [fal-ai/flux/dev]}
  - {name: r, protocol: replicate, models: [black-forest-labs/flux-schnell], price: {unit: image, usd: 0.003}}
  - name: g
    protocol: replicate
    models: [acme/custom:0123]
    price: {unit: gpu_second, usd_per_hour: 3.6, expected_s: 4}
  - {name: o, protocol: openai, models: [gpt-image-1], quality: low}
  - {name: t, protocol: together, models: [black-forest-labs/FLUX.1-schnell], price: {unit: megapixel, usd: 0.0027}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_each_protocol_builds_its_adapter_with_real_defaults(tmp_path: Path) -> None:
    configs = load_providers_file(write(tmp_path, PROVIDERS_YAML)).providers
    providers = [build_provider(config, api_key="k") for config in configs]
    kinds = [type(provider) for provider in providers]
    assert kinds == [
        FalProvider,
        ReplicateProvider,
        ReplicateProvider,
        OpenAIImagesProvider,
        TogetherProvider,
    ]
    assert [config.url for config in configs] == [
        "https://queue.fal.run",
        "https://api.replicate.com",
        "https://api.replicate.com",
        "https://api.openai.com/v1",
        "https://api.together.xyz/v1",
    ]
    assert [config.key_env for config in configs][1:] == ["REPLICATE_API_TOKEN"] * 2 + [
        "OPENAI_API_KEY",
        "TOGETHER_API_KEY",
    ]
    request = GenerationRequest(request_id="r", model="m", prompt="p", width=1024, height=1024)
    quotes = [await provider.quote(request) for provider in providers[1:]]
    expected = [0.003, 0.004, (272 * 40 + 1 * 5) / 1e6, 0.0027 * 1.048576]
    assert [q.usd for q in quotes] == pytest.approx(expected)
    for provider in providers:
        await provider.aclose()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: r, protocol: replicate, models: [a/b]}", "needs a price"),
        ("{name: t, protocol: together, models: [a/b], price: {unit: image}}", "exactly one of usd"),
        (
            "{name: t, protocol: together, models: [a/b], price: {unit: image, usd_per_hour: 1}}",
            "gpu_second only",
        ),
        ("{name: f, protocol: fal, models: [a/b], price: {unit: image, usd: 1}}", "fal publishes its prices"),
    ],
)
def test_prices_are_required_and_checked(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_providers_file(write(tmp_path, f"providers:\n  - {entry}\n"))


def test_missing_key_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    config = load_providers_file(write(tmp_path, PROVIDERS_YAML)).providers[-1]
    with pytest.raises(SpecError, match="TOGETHER_API_KEY"):
        build_provider(config)


async def test_one_market_serves_every_protocol_to_the_demo_wiring() -> None:
    fast = {"queue_s": [0, 0.05], "processing_s": [0.05, 0.1]}
    profiles = [
        {"name": "f", "protocol": "fal", "models": ["fal-ai/flux/dev"], "price_usd_per_mp": 0.02},
        {
            "name": "r",
            "protocol": "replicate",
            "models": ["a/flux"],
            "pricing": {"unit": "gpu_second", "usd": 0.001},
        },
        {
            "name": "o",
            "protocol": "openai",
            "models": ["gpt-image-1"],
            "pricing": {"unit": "image", "usd": 0.04},
        },
        {
            "name": "t",
            "protocol": "together",
            "models": ["a/flux"],
            "pricing": {"unit": "megapixel", "usd": 0.003},
        },
    ]
    scenario = Scenario(
        name="all-protocols",
        seed=2,
        providers=tuple(ProviderProfile.model_validate(p | fast) for p in profiles),
    )
    with MarketServer(scenario, time_factor=0.05) as market:
        generations = []
        for model in ("fal-ai/flux/dev", "a/flux", "gpt-image-1"):
            for provider in market_providers(market, model):
                request = GenerationRequest(
                    request_id=model, model=model, prompt="headshot", width=256, height=256
                )
                generations.append(await provider.generate(request))
                await provider.aclose()
        billed = {record.request_id: record.usd for record in market.billing()}
        # Shared routes still answer for everyone, whatever the protocol of the path's provider.
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{market.url}/_market/stats")).json()
        assert stats.keys() == {"f", "r", "o", "t"}
    assert sorted(g.provider for g in generations) == ["f", "o", "r", "t"]
    for generation in generations:
        assert generation.charged_usd == pytest.approx(billed[generation.provider_request_id])


COMFYUI_YAML = """
providers:
  - name: gpu-1
    protocol: comfyui
    base_url: {url}
    models: [fal-ai/flux/dev]
    poll_interval_s: 0.05
    comfyui: {{usd_per_hour: 0.45, checkpoint: flux1-dev-fp8.safetensors, seconds_per_step: 0.2}}
  - name: f
    protocol: fal
    models: [fal-ai/flux/dev]
    reference_endpoint: fal-ai/flux/dev/image-to-image
"""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: c, protocol: comfyui, base_url: 'http://g:8188', models: [m]}", "comfyui block is required"),
        ("{name: c, protocol: comfyui, models: [m], comfyui: {usd_per_hour: 1}}", "needs the box's base_url"),
        (
            "{name: c, protocol: comfyui, base_url: 'http://g:8188', models: [m], comfyui: {usd_per_hour: 1},"
            " price: {unit: image, usd: 1}}",
            "comfyui.usd_per_hour",
        ),
        ("{name: f, protocol: fal, models: [a/b], comfyui: {usd_per_hour: 1}}", "only there"),
        ("{name: o, protocol: openai, models: [m], reference_endpoint: x}", "fal only"),
    ],
)
def test_comfyui_and_reference_settings_are_checked(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_providers_file(write(tmp_path, f"providers:\n  - {entry}\n"))


async def test_a_comfyui_box_from_a_providers_file_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMFYUI_TOKEN", raising=False)  # a box without a proxy needs no token
    box = {"name": "gpu-1", "models": ["fal-ai/flux/dev"], "checkpoints": ["flux1-dev-fp8.safetensors"]}
    scenario = Scenario.model_validate(
        {
            "name": "one-box",
            "providers": [
                {"name": "f", "protocol": "fal", "models": ["fal-ai/flux/dev"], "price_usd_per_mp": 0.02}
            ],
            "comfyui_boxes": [box | {"usd_per_hour": 0.45, "seconds_per_step": 0.2, "load_s": 1.0}],
        }
    )
    with MarketServer(scenario, time_factor=0.01) as market:
        configs = load_providers_file(write(tmp_path, COMFYUI_YAML.format(url=market.base_url("gpu-1"))))
        provider = build_provider(configs.providers[0])
        fal = build_provider(configs.providers[1], api_key="k")
        assert isinstance(provider, ComfyUIProvider) and isinstance(fal, FalProvider)
        assert (await fal.capabilities()).supports_reference_images
        request = GenerationRequest(
            request_id="r", model="fal-ai/flux/dev", prompt="a headshot", width=256, height=256
        )
        try:
            generation = await provider.generate(request)
        finally:
            await provider.aclose()
            await fal.aclose()
        (bill,) = market.gpu_billing()
        assert market.truth(generation.provider_request_id).clean
    # 20 steps x 0.2 s + the checkpoint load and the other nodes, at $0.45 per GPU-hour.
    assert bill.usd_per_hour == 0.45 and bill.gpu_seconds >= 20 * 0.2
    assert generation.charged_usd == pytest.approx(bill.usd)


async def test_slots_reach_every_adapter_and_zero_is_refused(tmp_path: Path) -> None:
    entries = [
        "{name: f, protocol: fal, models: [fal-ai/flux/dev]",
        "{name: r, protocol: replicate, models: [a/b], price: {unit: image, usd: 0.003}",
        "{name: o, protocol: openai, models: [gpt-image-1]",
        "{name: t, protocol: together, models: [a/b], price: {unit: image, usd: 0.003}",
        "{name: c, protocol: comfyui, base_url: 'http://g:8188', models: [m], comfyui: {usd_per_hour: 1}",
        "{name: b, protocol: removebg, models: [background-removal], price: {unit: image, usd: 0.07}",
        "{name: s, protocol: segmentation, models: [background-removal],"
        " price: {unit: gpu_second, usd_per_hour: 0.4}",
    ]
    for slots, expected in (("", [None, None, None, None, 1, None, 1]), (", slots: 3", [3] * 7)):
        text = "providers:\n" + "".join(f"  - {entry}{slots}}}\n" for entry in entries)
        providers = [
            build_provider(c, api_key="k") for c in load_providers_file(write(tmp_path, text)).providers
        ]
        assert [getattr(p, "slots", "missing") for p in providers] == expected
        for provider in providers:
            await provider.aclose()
    with pytest.raises(SpecError, match="slots"):
        load_providers_file(write(tmp_path, f"providers:\n  - {entries[0]}, slots: 0}}\n"))
