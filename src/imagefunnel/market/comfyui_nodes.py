"""What the node classes of an emulated ComfyUI box compute (their definitions: ``comfyui_catalog``).

Two families, enough for the workflows the adapter ships and the ones recorded on a real server:

* model-free image nodes (``EmptyImage``, ``ImageBlur``, ``ImageInvert``, ``ImageScale``, ``LoadImage``,
  ``SaveImage``, ``PreviewImage``) compute real pixels, so the recorded answers hold (512x512, #3399FF
  blurred and inverted is (204, 102, 0));
* the classic text-to-image graph (``CheckpointLoaderSimple``, ``CLIPTextEncode``, ``EmptyLatentImage``,
  ``KSampler``, ``VAEEncode``, ``VAEDecode``): the sampler plans a picture with the market's image
  generator, so defects and the truth side channel work as they do for the fal emulator.

Timing, faults and caching belong to the runtime, not to nodes.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps

from imagefunnel.market.defects import Defect, Image, truncate
from imagefunnel.market.images import Truth, encode

__all__ = [
    "Conditioning",
    "Latent",
    "Loaded",
    "NodeContext",
    "NodeFailure",
    "Picture",
    "prompt_text",
    "run_node",
]

_INTERPOLATION = {
    "nearest-exact": cv2.INTER_NEAREST_EXACT,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
# PIL's truncated-loading switch is process-wide: flip it for one decode at a time. (The project's
# own decoder refuses truncated files before PIL sees them, whatever the switch says.)
_TRUNCATED_LOCK = threading.Lock()
# Bigger images would exhaust the emulator's memory; a real GPU box runs out of VRAM as well.
_MAX_PIXELS = 64_000_000


class NodeFailure(Exception):
    """A node raised while executing; carries what ``execution_error`` reports."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


# -- values flowing along links --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Loaded:
    """MODEL, CLIP or VAE of one checkpoint (only its name matters to the emulator)."""

    what: Literal["MODEL", "CLIP", "VAE"]
    ckpt: str


@dataclass(frozen=True, slots=True)
class Conditioning:
    text: str
    ckpt: str


@dataclass(frozen=True, slots=True)
class Latent:
    width: int
    height: int
    truth: Truth | None = None  # set once a sampler has "denoised" it


@dataclass(frozen=True, slots=True, eq=False)
class Picture:
    """An IMAGE: real pixels, or a market picture still to be rendered from its truth."""

    width: int
    height: int
    pixels: Image | None = None
    truth: Truth | None = None


class NodeContext(Protocol):
    """What nodes may ask of the box they run on."""

    # The garbage fault this prompt drew (BLACK or TRUNCATED), if any.
    garbage: Defect | None

    def input_file(self, name: str) -> bytes | None: ...

    def save_output(
        self, kind: str, subfolder: str, prefix: str, data: bytes, truth: Truth | None
    ) -> str: ...

    def plan(self, *, ckpt: str, text: str, width: int, height: int, seed: int) -> Truth: ...

    def render(self, truth: Truth) -> bytes: ...

    def png_text(self) -> Mapping[str, str]: ...


# -- execution -------------------------------------------------------------------------------
def run_node(
    class_type: str, inputs: Mapping[str, Any], ctx: NodeContext
) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """Outputs and UI output (``{"images": [...]}``) of one node; raises ``NodeFailure``."""
    fn = _IMPLEMENTATIONS[class_type]
    try:
        return fn(inputs, ctx)
    except (cv2.error, ValueError, TypeError, LookupError, MemoryError) as exc:
        # What a node's Python code would raise on odd inputs: ComfyUI reports it as execution_error.
        raise NodeFailure(_type_name(exc), str(exc)) from exc


def _empty_image(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    color = int(inputs["color"])
    rgb = np.array([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=np.uint8)
    width, height = _fits(int(inputs["width"]), int(inputs["height"]))
    pixels = np.broadcast_to(rgb, (height, width, 3)).copy()
    return (Picture(width, height, pixels=pixels),), None


def _blur(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    src = _pixels(inputs["image"], ctx)
    radius = int(inputs["blur_radius"])
    size = 2 * radius + 1
    out = cv2.GaussianBlur(src, (size, size), float(inputs["sigma"]), borderType=cv2.BORDER_REFLECT)
    return (_picture(np.asarray(out, dtype=np.uint8)),), None


def _invert(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    inverted = np.asarray(255 - _pixels(inputs["image"], ctx), dtype=np.uint8)
    return (_picture(inverted),), None


def _scale(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    src = _pixels(inputs["image"], ctx)
    h, w = src.shape[:2]
    width, height = int(inputs["width"]), int(inputs["height"])
    if width == 0 and height == 0:
        return (_picture(src),), None
    width = width or max(1, round(w * height / h))
    height = height or max(1, round(h * width / w))
    _fits(width, height)
    if inputs["crop"] == "center":
        # Crop the source to the target aspect first, as ComfyUI's common_upscale does.
        if w / h > width / height:
            keep = round(h * width / height)
            src = src[:, (w - keep) // 2 : (w - keep) // 2 + keep]
        else:
            keep = round(w * height / width)
            src = src[(h - keep) // 2 : (h - keep) // 2 + keep]
    out = cv2.resize(src, (width, height), interpolation=_INTERPOLATION[str(inputs["upscale_method"])])
    return (_picture(np.asarray(out, dtype=np.uint8)),), None


def _load_image(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    name = str(inputs["image"])
    data = ctx.input_file(name)
    if data is None:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: '{name}'")
    try:
        rgb = _open_rgb(data)
    except OSError:
        # ComfyUI's node_helpers.pillow retries with truncated loading: a file cut short loads,
        # and what was never read stays black.
        try:
            with _TRUNCATED_LOCK:
                ImageFile.LOAD_TRUNCATED_IMAGES = True
                try:
                    rgb = _open_rgb(data)
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
        except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
            raise NodeFailure(_type_name(exc), str(exc)) from exc
    except (SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise NodeFailure(_type_name(exc), str(exc)) from exc
    pixels = np.asarray(rgb, dtype=np.uint8)
    mask = np.zeros(pixels.shape[:2], dtype=np.float32)
    return (_picture(pixels), mask), None


def _open_rgb(data: bytes) -> PILImage.Image:
    with PILImage.open(io.BytesIO(data)) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def _save(
    inputs: Mapping[str, Any], ctx: NodeContext, *, kind: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    picture: Picture = inputs["images"]
    if kind == "output":
        subfolder, _, prefix = str(inputs["filename_prefix"]).rpartition("/")
    else:
        subfolder, prefix = "", "ComfyUI_temp"
    if ".." in subfolder.split("/") or subfolder.startswith("/"):
        raise NodeFailure("Exception", "Saving image outside the output folder is not allowed.")
    data = _png(picture, ctx)
    truth = picture.truth if picture.pixels is None else None
    filename = ctx.save_output(kind, subfolder, prefix, data, truth)
    return (), {"images": [{"filename": filename, "subfolder": subfolder, "type": kind}]}


def _png(picture: Picture, ctx: NodeContext) -> bytes:
    if picture.pixels is None and picture.truth is not None:
        # A planned market picture: its defect (garbage included) is part of its truth.
        return _with_text_chunks(ctx.render(picture.truth), ctx.png_text())
    pixels = _pixels(picture, ctx)
    if ctx.garbage is Defect.BLACK:
        pixels = np.zeros_like(pixels)
    data = _with_text_chunks(encode(pixels, "png"), ctx.png_text())
    return truncate(data) if ctx.garbage is Defect.TRUNCATED else data


def _checkpoint(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    ckpt = str(inputs["ckpt_name"])
    return (Loaded("MODEL", ckpt), Loaded("CLIP", ckpt), Loaded("VAE", ckpt)), None


def _text_encode(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    clip: Loaded = inputs["clip"]
    return (Conditioning(str(inputs["text"]), clip.ckpt),), None


def _empty_latent(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    return (Latent(int(inputs["width"]) // 8 * 8, int(inputs["height"]) // 8 * 8),), None


def _sampler(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    model: Loaded = inputs["model"]
    positive: Conditioning = inputs["positive"]
    latent: Latent = inputs["latent_image"]
    # The market picture depends on what a seeded diffusion model's output depends on.
    truth = ctx.plan(
        ckpt=model.ckpt,
        text=positive.text,
        width=latent.width,
        height=latent.height,
        seed=int(inputs["seed"]),
    )
    return (Latent(latent.width, latent.height, truth),), None


def _vae_decode(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    latent: Latent = inputs["samples"]
    if latent.truth is None:
        # Decoding an un-sampled latent gives a flat grey picture, as an all-zero latent does.
        grey = np.full((latent.height, latent.width, 3), 128, dtype=np.uint8)
        return (_picture(grey),), None
    return (Picture(latent.width, latent.height, truth=latent.truth),), None


def _vae_encode(inputs: Mapping[str, Any], ctx: NodeContext) -> tuple[tuple[Any, ...], None]:
    picture: Picture = inputs["pixels"]
    return (Latent(picture.width // 8 * 8, picture.height // 8 * 8),), None


def _pixels(picture: Picture, ctx: NodeContext) -> Image:
    if picture.pixels is not None:
        return picture.pixels
    if picture.truth is None:  # pragma: no cover - every Picture has one or the other
        raise NodeFailure("ValueError", "image has no pixels")
    buf = np.frombuffer(ctx.render(picture.truth), dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise NodeFailure("RuntimeError", "decoded image is empty")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _fits(width: int, height: int) -> tuple[int, int]:
    if width * height > _MAX_PIXELS:
        raise NodeFailure("torch.OutOfMemoryError", f"Allocation on device failed for {width}x{height}")
    return width, height


def _picture(pixels: Image) -> Picture:
    return Picture(int(pixels.shape[1]), int(pixels.shape[0]), pixels=pixels)


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"


def _with_text_chunks(data: bytes, text: Mapping[str, str]) -> bytes:
    """Insert tEXt chunks after IHDR, as ComfyUI stores the workflow in its PNGs."""
    ihdr_end = 8 + 25  # signature, then IHDR: length(4) type(4) data(13) crc(4)
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < ihdr_end:
        return data
    chunks = b""
    for key, value in text.items():
        body = b"tEXt" + key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")
        chunks += struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def prompt_text(prompt: Mapping[str, Any]) -> dict[str, str]:
    return {"prompt": json.dumps(prompt, separators=(",", ":"))}


_Impl = Callable[[Mapping[str, Any], NodeContext], tuple[tuple[Any, ...], dict[str, Any] | None]]
_IMPLEMENTATIONS: dict[str, _Impl] = {
    "EmptyImage": _empty_image,
    "ImageBlur": _blur,
    "ImageInvert": _invert,
    "ImageScale": _scale,
    "LoadImage": _load_image,
    "SaveImage": lambda inputs, ctx: _save(inputs, ctx, kind="output"),
    "PreviewImage": lambda inputs, ctx: _save(inputs, ctx, kind="temp"),
    "CheckpointLoaderSimple": _checkpoint,
    "CLIPTextEncode": _text_encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _sampler,
    "VAEDecode": _vae_decode,
    "VAEEncode": _vae_encode,
}
