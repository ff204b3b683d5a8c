"""Decoding hostile image bytes: every failure is one of our types with a precise message."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageFile

import imagefunnel.market
from imagefunnel.errors import ImageDecodeError, ImageError, ImageTooLarge
from imagefunnel.imaging import DecodedImage, decode_image, sniff_format
from imagefunnel.market.defects import truncate

PORTRAIT = Path(imagefunnel.market.__file__).parent / "assets" / "portraits" / "obama_1.jpg"


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def gradient(w: int = 64, h: int = 48) -> NDArray[np.uint8]:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    planes = [np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 90)]
    return np.asarray(np.concatenate(planes, axis=2), dtype=np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 8-bit gray pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def test_real_jpeg_decodes_to_rgb_with_its_hash() -> None:
    data = PORTRAIT.read_bytes()
    image = decode_image(data)
    assert (image.width, image.height, image.format) == (512, 512, "JPEG")
    assert image.rgb.shape == (512, 512, 3) and image.rgb.dtype == np.uint8
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.gray.shape == (512, 512)
    with pytest.raises(ValueError, match="read-only"):
        image.rgb[0, 0, 0] = 1


@pytest.mark.parametrize(
    ("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {}), ("JPEG", {"quality": 95})]
)
def test_supported_formats_roundtrip(fmt: str, params: dict[str, object]) -> None:
    rgb = gradient()
    image = decode_image(encode(Image.fromarray(rgb), fmt, **params))
    assert image.format == fmt and image.rgb.shape == rgb.shape
    tolerance = {"PNG": 0, "WEBP": 0, "GIF": 40, "JPEG": 8}[fmt]
    assert np.abs(image.rgb.astype(int) - rgb).mean() <= tolerance


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_truncated_files_are_refused(fmt: str, strength: float) -> None:
    data = encode(Image.fromarray(gradient(256, 256)), fmt)
    cut = truncate(data, strength) if strength else data[:-3]
    with pytest.raises(ImageDecodeError, match=f"^truncated {fmt}"):
        decode_image(cut)


def test_truncation_is_caught_even_if_pil_is_told_to_load_truncated_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # imagefunnel never switches it on
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for fmt in ("PNG", "JPEG", "WEBP"):
        with pytest.raises(ImageDecodeError, match=f"truncated {fmt}"):
            decode_image(truncate(encode(Image.fromarray(gradient(128, 128)), fmt), 0.5))


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment (where EXIF and its thumbnail live) right after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_jpeg_completeness_follows_the_structure_not_the_last_bytes() -> None:
    main = encode(Image.fromarray(gradient(128, 128)), "JPEG", progressive=True)
    thumbnail = encode(Image.fromarray(gradient(16, 16)), "JPEG")  # its own SOS ... EOI
    with_thumb = with_app1(main, b"Exif\0\0" + thumbnail)
    assert decode_image(with_thumb).width == 128
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        decode_image(with_thumb[: len(with_thumb) * 2 // 3])  # the thumbnail's EOI must not count
    # Bytes after the end-of-image (a motion photo's video, a maker's trailer) are not a scan.
    trailer = b"\xff\xda\x00\x08" + np.random.default_rng(3).integers(0, 256, 500, np.uint8).tobytes()
    assert decode_image(main + trailer).height == 128


def test_truncated_pixel_data_with_intact_trailer_is_refused_by_pil() -> None:
    data = encode(Image.fromarray(gradient(128, 128)), "PNG")
    idat = data.index(b"IDAT")
    corrupt = data[: idat + 20] + bytes(len(data) - idat - 40) + data[-20:]  # zeroed pixel stream
    with pytest.raises(ImageDecodeError, match="PNG") as info:
        decode_image(corrupt)
    assert not isinstance(info.value, OSError)  # PIL's type does not leak
    assert info.value.__cause__ is not None


def test_garbage_and_empty_and_wrong_types() -> None:
    garbage = np.random.default_rng(42).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageDecodeError, match=r"^not an image \(unknown binary data\)$"):
        decode_image(garbage)
    with pytest.raises(ImageDecodeError, match=r"empty \(0 bytes\)"):
        decode_image(b"")
    with pytest.raises(ImageDecodeError, match="must be bytes, got str"):
        decode_image("cat.png")  # type: ignore[arg-type]
    with pytest.raises(ImageDecodeError, match="must be bytes, got NoneType"):
        decode_image(None)  # type: ignore[arg-type]
    assert decode_image(bytearray(PORTRAIT.read_bytes())).format == "JPEG"


def test_valid_magic_followed_by_garbage_is_refused() -> None:
    garbage = np.random.default_rng(5).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a"):
        # ImageTooLarge is a fair answer too: random header bytes may declare a huge size.
        with pytest.raises(ImageError):
            decode_image(magic + garbage + b"IEND\0\0\0\0\xff\xd9")
    with pytest.raises(ImageDecodeError, match="corrupt PNG: the first chunk is not IHDR"):
        decode_image(b"\x89PNG\r\n\x1a\n" + garbage)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"BM" + bytes(60), "BMP"),
        (b"II*\x00" + bytes(60), "TIFF"),
        (b"<svg xmlns=...>", "SVG"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(12), "HEIC"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(12), "AVIF"),
    ],
)
def test_unsupported_formats_are_named(data: bytes, name: str) -> None:
    with pytest.raises(ImageDecodeError, match=f"unsupported image format {name}; supported: PNG, JPEG"):
        sniff_format(data)


def test_iso_media_that_is_not_an_image_is_named_without_echoing_its_brand() -> None:
    with pytest.raises(ImageDecodeError, match=r"^not an image \(MP4/QuickTime video or other ISO media\)$"):
        sniff_format(b"\x00\x00\x00\x18ftypzzzq" + bytes(12))


def test_decompression_bomb_header_is_refused_before_decoding() -> None:
    # Decoding would need 10 GB; the header check refuses it without allocating anything.
    with pytest.raises(ImageTooLarge, match="image is 100000x100000 = 10000 MP, over the 40 MP limit"):
        decode_image(png_claiming(100_000, 100_000))


def test_highly_compressible_huge_png_is_refused() -> None:
    width = height = 8000  # 64 MP of zeros compress to about 60 KB
    stream = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    idat = b"".join(stream.compress(row) for _ in range(height)) + stream.flush()
    data = png_claiming(width, height, idat)
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge, match="8000x8000 = 64 MP, over the 40 MP limit"):
        decode_image(data)


def test_pil_bomb_limit_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lifting our limit does not lift PIL's; an operator who lowers PIL's limit gets it enforced.
    with pytest.raises(ImageTooLarge, match=r"100000x100000 = 10000 MP, over the 89 MP limit"):
        decode_image(png_claiming(100_000, 100_000), max_pixels=10**12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused by our check: PIL does not get to warn
        with pytest.raises(ImageTooLarge, match=r"40x40 = 0.0016 MP, over the 0.001 MP limit"):
            decode_image(encode(Image.fromarray(gradient(40, 40)), "PNG"))


def test_byte_and_pixel_limits() -> None:
    data = PORTRAIT.read_bytes()
    with pytest.raises(ImageTooLarge, match=f"image is {len(data):,} bytes, over the 1,000 byte limit"):
        decode_image(data, max_bytes=1000)
    with pytest.raises(ImageTooLarge, match=r"512x512 = 0.26 MP, over the 0.1 MP limit"):
        decode_image(data, max_pixels=100_000)


def test_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = decode_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    assert (image.width, image.height) == (20, 40)
    top, bottom = image.rgb[:15].reshape(-1, 3).mean(0), image.rgb[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # the left (red) side is now on top


def test_rgba_is_composited_over_white_and_alpha_kept() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 5:, 3] = 255  # right half opaque red, left half transparent
    image = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert image.alpha is not None and image.alpha[0, 0] == 0 and image.alpha[0, 9] == 255
    assert tuple(image.rgb[0, 0]) == (255, 255, 255) and tuple(image.rgb[0, 9]) == (200, 0, 0)


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA", "CMYK"])
def test_other_modes_become_rgb(mode: str) -> None:
    im = Image.fromarray(gradient()).convert(mode)
    image = decode_image(encode(im, "JPEG" if mode == "CMYK" else "PNG"))
    assert image.rgb.shape == (48, 64, 3) and image.rgb.dtype == np.uint8
    expected = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert np.abs(image.rgb.astype(np.int16) - expected).max() <= (12 if mode == "CMYK" else 0)


def test_palette_with_transparency_keeps_alpha() -> None:
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    image = decode_image(encode(im, "PNG", transparency=1))
    assert image.alpha is not None and int(image.alpha.max()) == 0
    assert tuple(image.rgb[0, 0]) == (255, 255, 255)


def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    wide = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    image = decode_image(encode(Image.fromarray(wide), "PNG"))
    assert image.rgb[0, 0, 0] == 0 and image.rgb[-1, -1, 0] == 255
    assert image.rgb[32, 0, 0] == round(int(wide[32, 0]) / 257)  # mid-gray stays mid-gray


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(data)
    assert image.rgb[8, 8, 0] > 200 and image.rgb[8, 8, 2] < 50


def test_random_corruption_only_ever_raises_our_errors() -> None:
    rng = np.random.default_rng(1234)
    seeds = [encode(Image.fromarray(gradient(32, 32)), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP")]
    for _ in range(120):
        data = bytearray(seeds[int(rng.integers(len(seeds)))])
        for pos in rng.integers(0, len(data), int(rng.integers(1, 8))):
            data[int(pos)] = int(rng.integers(0, 256))
        try:
            image = decode_image(bytes(data))
        except ImageError:
            continue
        assert image.rgb.ndim == 3


def test_from_array_wraps_pixels() -> None:
    rgb = gradient()
    image = DecodedImage.from_array(rgb)
    assert image.format == "RAW" and image.rgb is not rgb and np.array_equal(image.rgb, rgb)
    assert image.sha256 == DecodedImage.from_array(rgb.copy()).sha256
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        DecodedImage.from_array(rgb[:, :, 0])
