"""The node classes an emulated ComfyUI box offers, as ``/object_info`` describes them.

Input definitions follow the real nodes (names, types, defaults, limits, combos), so validation
answers the same errors for the same mistakes. What the nodes compute is in ``comfyui_nodes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MAX_RESOLUTION", "SAMPLERS", "SCHEDULERS", "UPSCALE_METHODS", "NodeSpec", "node_catalog"]

MAX_RESOLUTION = 16384
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde",
    "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "gradient_estimation",
    "er_sde", "seeds_2", "seeds_3", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip
SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
)  # fmt: skip
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
Kind = Literal["plain", "loader", "sampler"]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    category: str
    required: Mapping[str, list[Any]]
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] | None = None
    output_node: bool = False
    hidden: Mapping[str, str] = field(default_factory=dict)
    display_name: str = ""
    description: str = ""
    kind: Kind = "plain"
    custom_validation: bool = False

    def object_info(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {"required": dict(self.required)}
        order: dict[str, list[str]] = {"required": list(self.required)}
        if self.hidden:
            inputs["hidden"] = dict(self.hidden)
            order["hidden"] = list(self.hidden)
        return {
            "input": inputs,
            "input_order": order,
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.output_names or self.outputs),
            "name": self.name,
            "display_name": self.display_name or self.name,
            "description": self.description,
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        }


def _int(default: int, low: int, high: int, **extra: Any) -> list[Any]:
    return ["INT", {"default": default, "min": low, "max": high, "step": 1, **extra}]


def _side(default: int, low: int, step: int) -> list[Any]:
    return ["INT", {"default": default, "min": low, "max": MAX_RESOLUTION, "step": step}]


def node_catalog(*, checkpoints: Sequence[str], input_files: Sequence[str]) -> dict[str, NodeSpec]:
    """Every node class a box offers; combos list the box's checkpoints and uploaded files."""
    save_hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    specs = [
        NodeSpec("EmptyImage", "image", {
            "width": _side(512, 1, 1), "height": _side(512, 1, 1), "batch_size": _int(1, 1, 4096),
            "color": _int(0, 0, 0xFFFFFF, display="color"),
        }, ("IMAGE",)),
        NodeSpec("ImageBlur", "image/postprocessing", {
            "image": ["IMAGE"], "blur_radius": _int(1, 1, 31),
            "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}],
        }, ("IMAGE",), display_name="Image Blur"),
        NodeSpec("ImageInvert", "image", {"image": ["IMAGE"]}, ("IMAGE",), display_name="Invert Image"),
        NodeSpec("ImageScale", "image/upscaling", {
            "image": ["IMAGE"], "upscale_method": [list(UPSCALE_METHODS)], "width": _side(512, 0, 1),
            "height": _side(512, 0, 1), "crop": [["disabled", "center"]],
        }, ("IMAGE",), display_name="Upscale Image"),
        NodeSpec("LoadImage", "image", {"image": [sorted(input_files), {"image_upload": True}]},
                 ("IMAGE", "MASK"), display_name="Load Image", custom_validation=True),
        NodeSpec("SaveImage", "image", {
            "images": ["IMAGE", {"tooltip": "The images to save."}],
            "filename_prefix": ["STRING", {"default": "ComfyUI"}],
        }, output_node=True, hidden=save_hidden, display_name="Save Image",
           description="Saves the input images to your ComfyUI output directory."),
        NodeSpec("PreviewImage", "image", {"images": ["IMAGE"]}, output_node=True, hidden=save_hidden,
                 display_name="Preview Image", description="Saves the input images to your ComfyUI output directory."),
        NodeSpec("CheckpointLoaderSimple", "loaders", {"ckpt_name": [list(checkpoints)]},
                 ("MODEL", "CLIP", "VAE"), display_name="Load Checkpoint", kind="loader"),
        NodeSpec("CLIPTextEncode", "conditioning", {
            "text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP"],
        }, ("CONDITIONING",), display_name="CLIP Text Encode (Prompt)"),
        NodeSpec("EmptyLatentImage", "latent", {
            "width": _side(512, 16, 8), "height": _side(512, 16, 8), "batch_size": _int(1, 1, 4096),
        }, ("LATENT",), display_name="Empty Latent Image"),
        NodeSpec("KSampler", "sampling", {
            "model": ["MODEL"], "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            "steps": _int(20, 1, 10000),
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [list(SAMPLERS)], "scheduler": [list(SCHEDULERS)],
            "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
        }, ("LATENT",), kind="sampler"),
        NodeSpec("VAEDecode", "latent", {"samples": ["LATENT"], "vae": ["VAE"]}, ("IMAGE",),
                 display_name="VAE Decode"),
        NodeSpec("VAEEncode", "latent", {"pixels": ["IMAGE"], "vae": ["VAE"]}, ("LATENT",),
                 display_name="VAE Encode"),
    ]  # fmt: skip
    return {spec.name: spec for spec in specs}
