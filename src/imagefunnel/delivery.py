"""The files a user gets: the delivered images in rank order, next to the report and results.json.

``delivered/01.png``, ``02.jpg``… (extension from the image's own bytes, not from what a provider
claimed), and every image path in ``results.json`` relative to the folder it is written in, so the
folder can be moved, zipped or served as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from imagefunnel.errors import ImageDecodeError
from imagefunnel.funnel import JobResult
from imagefunnel.imaging import sniff_format
from imagefunnel.store import BlobStore

__all__ = ["DELIVERED_DIR", "write_delivery"]

DELIVERED_DIR = "delivered"
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


def _extension(data: bytes) -> str:
    try:
        return _EXTENSIONS[sniff_format(data)]
    except (ImageDecodeError, KeyError):
        return "bin"  # never delivered in practice: a candidate that passed decoded


def write_delivery(result: JobResult, blobs: BlobStore, out_dir: Path) -> JobResult:
    """Write ``out_dir/delivered/NN.ext`` for the delivered candidates, by rank, replacing what an
    earlier run of the job left there; return ``result`` with paths relative to ``out_dir``."""
    folder = out_dir / DELIVERED_DIR
    if folder.exists():
        shutil.rmtree(folder)  # a resumed job's ranks can change: no stale 03.png next to new ones
    folder.mkdir(parents=True)
    delivered = sorted((c for c in result.candidates if c.delivered), key=lambda c: c.rank or 0)
    width = max(2, len(str(len(delivered))))
    paths: dict[int, str] = {}
    for position, candidate in enumerate(delivered, start=1):
        data = blobs.get(candidate.blob_sha256)
        target = folder / f"{position:0{width}d}.{_extension(data)}"
        target.write_bytes(data)
        paths[candidate.id] = target.relative_to(out_dir).as_posix()
    candidates = [
        c.model_copy(
            update={
                "image_path": paths.get(c.id)
                or Path(os.path.relpath(blobs.path(c.blob_sha256), out_dir)).as_posix()
            }
        )
        for c in result.candidates
    ]
    return result.model_copy(update={"candidates": candidates})
