"""Workflows used by the deployment tests: the shipped ones, and a FLUX-style graph."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from imagefunnel.market.comfyui_app import ComfyUIBox, ComfyUIServer
from imagefunnel.providers.comfyui_workflow import Workflow, parse_workflow

# FLUX as ComfyUI's own template wires it: SamplerCustomAdvanced fed by noise, guider, sampler,
# sigmas and latent; the prompt reaches it through FluxGuidance and BasicGuider.
FLUX = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red sneaker on white", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "11": {
        "class_type": "DualCLIPLoader",
        "inputs": {
            "clip_name1": "t5xxl_fp16.safetensors",
            "clip_name2": "clip_l.safetensors",
            "type": "flux",
        },
    },
    "12": {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
    },
    "13": {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["25", 0],
            "guider": ["22", 0],
            "sampler": ["16", 0],
            "sigmas": ["17", 0],
            "latent_image": ["27", 0],
        },
    },
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {
        "class_type": "BasicScheduler",
        "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0, "model": ["12", 0]},
    },
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
}


@pytest.fixture
def flux() -> Workflow:
    return parse_workflow(json.dumps(FLUX), name="flux")


@pytest.fixture
def start_box() -> Iterator[Callable[..., ComfyUIServer]]:
    started: list[ComfyUIServer] = []

    def start(name: str = "box-a", **overrides: object) -> ComfyUIServer:
        server = ComfyUIServer(ComfyUIBox(name=name, **overrides), time_factor=0.01)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
