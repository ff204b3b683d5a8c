"""Safe decoding of untrusted image bytes into one RGB array.

Every image imagefunnel looks at (provider outputs, uploads to the evaluations API, reference photos)
comes through :func:`decode_image`, which treats the bytes as hostile (files a user names are read
with :func:`read_image_file`, which refuses pipes and devices and bounds the read):

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
import re
import struct
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import NoReturn

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from imagefunnel.errors import ImageDecodeError, ImageTooLarge
from imagefunnel.imagefile import MAX_IMAGE_BYTES, describe_content, read_image_file

__all__ = [
    "MAX_IMAGE_BYTES",
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "decode_image",
    "describe_content",
    "fit_long_side",
    "looks_like_image",
    "read_image_file",
    "sniff_format",
]

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")

# Formats we recognise only to say precisely why we refuse them.
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)

# ISO media brands that are still images (other brands are video: see describe_content).
_ISO_IMAGE_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"), "HEIC"),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}

_ORIENTATION_TAG = 0x0112
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
        gray = np.asarray(cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        gray.setflags(write=False)
        return gray


def _supported_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _unsupported_format(data: bytes) -> str | None:
    """The name of an image format we recognise only to refuse it precisely."""
    if data[4:8] == b"ftyp":
        return _ISO_IMAGE_BRANDS.get(data[8:12])  # looked up, never echoed: the brand is file content
    head = data[:16].lstrip()
    return next((name for magic, name in _REFUSED_MAGIC if head.startswith(magic)), None)


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like an image of any format we know, supported or not."""
    return _supported_format(data) is not None or _unsupported_format(data) is not None


def sniff_format(data: bytes) -> str:
    """Name the image format from its magic bytes, or raise :class:`ImageDecodeError`."""
    fmt = _supported_format(data)
    if fmt is not None:
        return fmt
    refused = _unsupported_format(data)
    if refused is not None:
        _refuse(refused)
    # Name what the bytes look like, never the bytes: they may be a password file or an environment.
    raise ImageDecodeError(f"not an image ({describe_content(data)})")


def _refuse(name: str) -> NoReturn:
    raise ImageDecodeError(f"unsupported image format {name}; supported: {', '.join(SUPPORTED_FORMATS)}")


def _check_complete(fmt: str, data: bytes) -> None:
    """Refuse files whose container shows they were cut short, without decoding them."""
    if fmt == "PNG":
        if data[12:16] != b"IHDR":
            raise ImageDecodeError("corrupt PNG: the first chunk is not IHDR")
        end = data.rfind(b"IEND")
        if end == -1 or end + 8 > len(data):  # chunk type plus its 4-byte CRC
            raise ImageDecodeError(f"truncated PNG: no complete IEND chunk in {len(data)} bytes")
    if fmt == "JPEG" and not _jpeg_reaches_end(data):
        raise ImageDecodeError(
            f"truncated JPEG: no end-of-image marker after the last scan ({len(data)} bytes)"
        )
    if fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            raise ImageDecodeError(f"truncated WEBP: header declares {declared} bytes, got {len(data)}")


# In entropy-coded JPEG data a 0xFF byte is followed by 0x00 (stuffing) or a restart marker; anything
# else is the next real marker.
_NEXT_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_reaches_end(data: bytes) -> bool:
    """Walk the JPEG's segments and scans; False only when the data ends before end-of-image.

    Searching for 0xFFD9 from the end would be wrong both ways: an EXIF thumbnail has its own EOI,
    and motion-photo trailers after the real EOI hold arbitrary bytes. A walk the structure does not
    allow (a corrupt file) returns True and is left for the decoder to reject.
    """
    i = 2
    while i + 2 <= len(data):
        if data[i] != 0xFF:
            return True
        marker = data[i + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, no-length markers
            i += 1 if marker == 0xFF else 2
            continue
        segment_end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:
            i = segment_end
            continue
        found = _NEXT_JPEG_MARKER.search(data, segment_end)  # skip the scan's entropy-coded data
        if found is None:
            return False
        i = found.start()
    return False


def _declared_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """Width and height as the header declares them, read without PIL; None when unparseable."""
    try:
        if fmt == "PNG":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if fmt == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
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


def _megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.2g} MP"


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image declares an empty size {width}x{height}")
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {_megapixels(pixels)}, over the {_megapixels(max_pixels)} limit"
        )


def _open_lazily(data: bytes, fmt: str) -> Image.Image:
    """Parse the header only; PIL allocates no pixels until ``load()``."""
    try:
        return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{fmt} refused as a decompression bomb: {exc}") from exc
    except _PIL_DECODE_ERRORS as exc:
        raise ImageDecodeError(f"corrupt {fmt} header: {exc}") from exc


def _load(im: Image.Image, fmt: str) -> Image.Image:
    try:
        im.load()
        # The EXIF block is as untrusted as the pixels. Transposing copies the image, so only do it
        # when the orientation tag asks for it (values 2-8; 1 is upright).
        if im.getexif().get(_ORIENTATION_TAG, 1) in range(2, 9):
            return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{fmt} refused as a decompression bomb: {exc}") from exc
    except _PIL_DECODE_ERRORS as exc:
        kind = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ImageDecodeError(f"{kind} {fmt}: {exc}") from exc
    return im


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
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8), None
    rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    alpha = rgba[:, :, 3].copy()
    weight = alpha[:, :, None].astype(np.float32) / 255.0
    over_white = rgba[:, :, :3].astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.rint(over_white).astype(np.uint8), alpha


def decode_image(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = 40_000_000
) -> DecodedImage:
    """Decode untrusted image bytes into an upright 8-bit RGB :class:`DecodedImage`.

    Raises :class:`ImageTooLarge` over ``max_bytes`` or ``max_pixels`` (checked against the header
    before decoding) and :class:`ImageDecodeError` for anything else that is not a complete PNG,
    JPEG, WebP or GIF image.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"image data must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size == 0:
        raise ImageDecodeError("image data is empty (0 bytes)")
    if size > max_bytes:  # checked before copying a bytearray or memoryview
        raise ImageTooLarge(f"image is {size:,} bytes, over the {max_bytes:,} byte limit")
    data = bytes(data)
    # Honour PIL's own bomb limit too (an operator may have lowered it), but check it ourselves
    # before PIL parses anything: PIL only warns below twice its limit, and warnings are global
    # state that scoring threads must not juggle.
    if Image.MAX_IMAGE_PIXELS is not None:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    fmt = sniff_format(data)
    _check_complete(fmt, data)
    declared = _declared_size(fmt, data)
    if declared is not None:
        _check_pixels(*declared, max_pixels)
    im = _open_lazily(data, fmt)
    _check_pixels(im.width, im.height, max_pixels)
    rgb, alpha = _to_rgb(_load(im, fmt))
    return DecodedImage(rgb=rgb, format=fmt, sha256=hashlib.sha256(data).hexdigest(), alpha=alpha)


def fit_long_side(pixels: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    """``pixels`` (HxW or HxWxC) with the long side reduced to at most ``side``; never upscaled.
    INTER_AREA averages whole source pixels, so no aliasing or ringing is added."""
    h, w = pixels.shape[:2]
    if max(h, w) <= side:
        return pixels
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
