"""Visible text and branding drawn in Pillow's bundled font, three ways: a corner watermark, a logo
badge and a caption band. Letters are at least 8 px high: smaller text is not legible branding."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imagefunnel.evaluation.generators.base import Generator, Rgb

__all__ = ["TEXT_GENERATORS"]

MIN_TEXT_PX = 8.0
_TEXT = ("text_area", "text_chars")


def _draw_text(rgb: Rgb, text: str, *, height: float, corner: bool, alpha: int, badge: bool) -> Rgb:
    img = Image.fromarray(rgb).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=round(max(height * img.height, MIN_TEXT_PX) * 1.4))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    margin = 0.05 * min(img.size)
    x, y = (img.width - w - margin, img.height - h - margin) if corner else (margin, margin)
    if badge:
        draw.rectangle((x - 0.4 * h, y - 0.3 * h, x + w + 0.4 * h, y + 1.3 * h), fill=(25, 35, 110, alpha))
    draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, alpha))
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


def watermark(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A stock-photo watermark: small (1.6-3 % of the height), semi-transparent, in a corner.
    name = str(rng.choice(["Getty Images", "shutterstock", "Studio Lumen", "© PhotoCo"]))
    return _draw_text(rgb, name, height=0.016 + 0.014 * strength, corner=True, alpha=190, badge=False)


def logo(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A brand badge at the top: 3-6 % of the height.
    name = str(rng.choice(["ACME", "NOVA", "ZENITH", "Bolt Co"]))
    return _draw_text(rgb, name, height=0.03 + 0.03 * strength, corner=False, alpha=255, badge=True)


def caption(rgb: Rgb, strength: float, rng: np.random.Generator) -> Rgb:
    # A dark caption band across the lower fifth with a slogan in it, 4-7 % of the height.
    img = Image.fromarray(rgb).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = str(rng.choice(["SALE 50% OFF", "Best Agent 2024", "Call us today", "NEW IN STORE"]))
    size = round(max((0.04 + 0.03 * strength) * img.height, MIN_TEXT_PX) * 1.4)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    y = round(img.height * 0.8)
    draw.rectangle((0, y - size * 0.3, img.width, y + (bottom - top) + size * 0.3), fill=(0, 0, 0, 150))
    draw.text(((img.width - (right - left)) / 2 - left, y - top), text, font=font, fill=(255, 230, 0, 255))
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


TEXT_GENERATORS: tuple[Generator, ...] = (
    Generator(name="watermark", family="text", expect=_TEXT, make=watermark, how="corner watermark, alpha 0.75"),
    Generator(name="logo", family="text", expect=_TEXT, make=logo, how="logo badge at the top"),
    Generator(name="caption", family="text", expect=_TEXT, make=caption, how="slogan on a caption band"),
)  # fmt: skip
