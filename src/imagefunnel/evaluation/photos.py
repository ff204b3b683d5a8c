"""The real photos a development set is made from: the market's portraits and the evaluation's own.

Each folder holds JPEGs and a ``LICENSES.md`` table (file, person, source, license). Only photos
listed there are used, so a photo without a recorded source and licence can never enter a set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

import cv2
import numpy as np
from numpy.typing import NDArray

from imagefunnel.evaluation.manifest import SourcePhoto

__all__ = ["Photo", "photo", "photos"]

_FOLDERS = (("imagefunnel.market", "assets/portraits"), ("imagefunnel.evaluation", "photos"))


@dataclass(frozen=True, slots=True)
class Photo:
    source: SourcePhoto
    data: bytes  # the JPEG as shipped

    @property
    def rgb(self) -> NDArray[np.uint8]:
        bgr = cv2.imdecode(np.frombuffer(self.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _folder(package: str, path: str) -> Traversable:
    folder = resources.files(package)
    for part in path.split("/"):
        folder = folder / part
    return folder


def _rows(folder: Traversable) -> dict[str, list[str]]:
    rows = {}
    for line in (folder / "LICENSES.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".jpg"):
            rows[cells[0].removesuffix(".jpg")] = cells
    return rows


@lru_cache(maxsize=1)
def photos() -> tuple[Photo, ...]:
    """Every licensed photo of a human face, by name (a dog photo is listed but is no portrait)."""
    out = []
    for package, path in _FOLDERS:
        folder = _folder(package, path)
        for stem, cells in sorted(_rows(folder).items()):
            if "no human face" in cells[1]:
                continue
            source = SourcePhoto(name=stem, person=cells[1], origin=cells[2].strip("`"), license=cells[3])
            out.append(Photo(source, (folder / f"{stem}.jpg").read_bytes()))
    return tuple(out)


def photo(name: str) -> Photo:
    """The photo called ``name``; KeyError when there is none."""
    for item in photos():
        if item.source.name == name:
            return item
    raise KeyError(name)
