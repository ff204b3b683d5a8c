"""Safe decoding of untrusted image bytes into one RGB array.

Every image imagefunnel looks at (provider outputs, uploads to the evaluations API, reference photos)
comes through :func:`decode_image`, which treats the bytes as hostile:

1. refuse anything that is not non-empty ``bytes`` or is over the byte limit;
2. sniff the magic bytes and accept only PNG, JPEG, WebP and GIF (first frame);
3. refuse files whose structure is visibly cut short (a cheap check that also works when some
   other library in the process has switched on PIL's ``LOAD_TRUNCATED_IMAGES``);
4. read the *declared* dimensions from the header and refuse images over the pixel limit before a
   single pixel is allocated (decompression bombs);
5. decode fully, apply the EXIF orientation and convert any mode to 8-bit RGB (keeping alpha aside).

Every failure is one of our own :class:`~imagefunnel.errors.ImageError` types raised ``from`` the
PIL error, so callers never see PIL's exception types.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from imagefunnel.errors import ImageDecodeError, ImageTooLarge

__all__ = ["SUPPORTED_FORMATS", "DecodedImage", "decode_image", "sniff_format"]

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")

# Formats we recognise only to say precisely why we refuse them.
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)

# What PIL raises on corrupt input. Fuzzing PIL has produced all of these, not only OSError.
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, zlib.error)


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image: upright 8-bit RGB pixels plus where they came from.

    ``rgb`` is read-only so that scorers, which share one decoded image, cannot alter it.
    ``alpha`` is the transparency channel when the source had one; ``rgb`` is then composited
    over white, the way viewers show a transparent image.
    """

    rgb: NDArray[np.uint8]
    format: str
    sha256: str
    alpha: NDArray[np.uint8] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"rgb must be an HxWx3 uint8 array, got {self.rgb.dtype} {self.rgb.shape}")
        if self.rgb.shape[0] == 0 or self.rgb.shape[1] == 0:
            raise ValueError("rgb must not be empty")
        self.rgb.setflags(write=False)
        if self.alpha is not None:
            self.alpha.setflags(write=False)

    @classmethod
    def from_array(cls, rgb: NDArray[np.uint8], *, format: str = "RAW") -> DecodedImage:
        """Wrap pixels that never were bytes (tests, defect injection); hashes the pixel data."""
        pixels = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
        digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
        return cls(rgb=pixels, format=format, sha256=digest)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000

    @cached_property
    def gray(self) -> NDArray[np.uint8]:
        """Luma (ITU-R BT.601, as OpenCV computes it), computed once on first use."""
        gray: NDArray[np.uint8] = cv2.cvtColor(np.asarray(self.rgb), cv2.COLOR_RGB2GRAY)
        gray.setflags(write=False)
        return gray


def sniff_format(data: bytes) -> str:
    """Name the image format from its magic bytes, or raise :class:`ImageDecodeError`."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[4:8] == b"ftyp":
        return _refuse(f"{data[8:12].decode('latin-1').strip()} (ISO media: HEIC/AVIF)")
    head = data[:16].lstrip()
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return _refuse(name)
    raise ImageDecodeError(f"not a recognised image format (first bytes: {data[:8]!r})")


def _refuse(name: str) -> str:
    raise ImageDecodeError(f"unsupported image format {name}; supported: {', '.join(SUPPORTED_FORMATS)}")


def _check_complete(fmt: str, data: bytes) -> None:
    """Refuse files whose container shows they were cut short, without decoding them."""
    if fmt == "PNG" and data.rfind(b"IEND") == -1:
        raise ImageDecodeError(f"truncated PNG: no IEND chunk in {len(data)} bytes")
    # Entropy-coded JPEG data cannot contain 0xFFD9 or 0xFFDA (0xFF is byte-stuffed), so a
    # complete file has an end-of-image marker after its last start-of-scan; an EXIF thumbnail's
    # own EOI comes before the main scan and does not count.
    if fmt == "JPEG" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise ImageDecodeError(f"truncated JPEG: no end-of-image marker after the last scan ({len(data)} bytes)")
    if fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            raise ImageDecodeError(f"truncated WEBP: header declares {declared} bytes, got {len(data)}")


def _declared_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """Width and height as the header declares them, read without PIL; None when unparseable."""
    try:
        if fmt == "PNG":
            return struct.unpack(">II", data[16:24])  # type: ignore[return-value]
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])  # type: ignore[return-value]
        if fmt == "WEBP":
            return _webp_size(data)
        return _jpeg_size(data)
    except struct.error:
        return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments up to the first start-of-frame."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image declares an empty size {width}x{height}")
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {pixels / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit"
        )


def _open_lazily(data: bytes, fmt: str) -> Image.Image:
    """Parse the header only; PIL allocates no pixels until ``load()``."""
    try:
        # PIL warns (and past twice its limit raises) on huge declared sizes; both mean a bomb.
        # catch_warnings is process-global, but it only turns this one warning class into an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{fmt} refused as a decompression bomb: {exc}") from exc
    except _PIL_DECODE_ERRORS as exc:
        raise ImageDecodeError(f"corrupt {fmt} header: {exc}") from exc


def _load(im: Image.Image, fmt: str) -> Image.Image:
    try:
        im.load()
        # exif_transpose parses the EXIF block, which is as untrusted as the pixels.
        upright = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{fmt} refused as a decompression bomb: {exc}") from exc
    except _PIL_DECODE_ERRORS as exc:
        kind = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ImageDecodeError(f"{kind} {fmt}: {exc}") from exc
    return upright if upright is not None else im


def _to_rgb(im: Image.Image) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """Any PIL mode to 8-bit RGB; alpha (if any) returned separately, RGB composited over white."""
    if im.mode.startswith("I") or im.mode == "F":
        # 16-bit PNGs open as "I;16"/"I"; PIL's convert("RGB") would clip them at 255, not scale.
        top = 255.0 if im.mode == "F" else 65535.0
        wide = np.asarray(im, dtype=np.float64)
        gray = np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)), None
    has_alpha = "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info)
    if not has_alpha:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), None
    rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    alpha = rgba[:, :, 3].copy()
    weight = alpha[:, :, None].astype(np.float32) / 255.0
    over_white = rgba[:, :, :3].astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.rint(over_white).astype(np.uint8), alpha


def decode_image(data: bytes, *, max_bytes: int = 40_000_000, max_pixels: int = 40_000_000) -> DecodedImage:
    """Decode untrusted image bytes into an upright 8-bit RGB :class:`DecodedImage`.

    Raises :class:`ImageTooLarge` over ``max_bytes`` or ``max_pixels`` (checked against the header
    before decoding) and :class:`ImageDecodeError` for anything else that is not a complete PNG,
    JPEG, WebP or GIF image.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise ImageDecodeError(f"image data must be bytes, got {type(data).__name__}")
    if not data:
        raise ImageDecodeError("image data is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data):,} bytes, over the {max_bytes:,} byte limit")
    fmt = sniff_format(data)
    _check_complete(fmt, data)
    declared = _declared_size(fmt, data)
    if declared is not None:
        _check_pixels(*declared, max_pixels)
    im = _open_lazily(data, fmt)
    _check_pixels(im.width, im.height, max_pixels)
    rgb, alpha = _to_rgb(_load(im, fmt))
    return DecodedImage(rgb=rgb, format=fmt, sha256=hashlib.sha256(data).hexdigest(), alpha=alpha)
