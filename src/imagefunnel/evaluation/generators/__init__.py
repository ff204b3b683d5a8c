"""Defect generators for evaluation, written apart from the detectors they grade.

Nothing here imports :mod:`imagefunnel.scoring` or the market's defects: a detector graded only by
the edit it was tuned on proves nothing. Every family of defect is made in at least two ways that
differ in how (gains in linear light and an additive tint; gaussian, motion and defocus blur; mean
and point-sampled mosaics ...), and faces are located with OpenCV's Haar cascades, not the mesh.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from imagefunnel.evaluation.generators.base import Generator, Rgb
from imagefunnel.evaluation.generators.faces import FACE_GENERATORS
from imagefunnel.evaluation.generators.pixels import PIXEL_GENERATORS
from imagefunnel.evaluation.generators.text import TEXT_GENERATORS

__all__ = ["GENERATORS", "TRUNCATED", "Generator", "Rgb", "families"]

TRUNCATED = "truncated"  # made from the encoded bytes, not the pixels (see devset)

GENERATORS: Mapping[str, Generator] = MappingProxyType(
    {g.name: g for g in (*PIXEL_GENERATORS, *FACE_GENERATORS, *TEXT_GENERATORS)}
)


def families() -> dict[str, tuple[str, ...]]:
    """Each family and the names of the generators that make it."""
    out: dict[str, list[str]] = {}
    for g in GENERATORS.values():
        out.setdefault(g.family, []).append(g.name)
    return {family: tuple(names) for family, names in out.items()}
