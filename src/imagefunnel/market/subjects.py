"""Who a reference photo shows: the market's stand-in for a subject-conditioned generator.

A real identity-preserving model (img2img, IP-Adapter, PuLID) renders the person in the photos it is
given. The market knows only the people of its portrait assets, grouped by identity (``obama_1``,
``obama_2`` and ``obama_3`` are one person), so it recognises a reference photo as one of its own
assets — by its exact bytes, else by perceptual hash (the same photo re-encoded, resized or mirrored)
— and renders that person. A photo it does not recognise yields no subject: the market then renders
a random person, as a generator that ignored the reference would.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import imagehash
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from imagefunnel.errors import ImageError
from imagefunnel.imaging import decode_image

__all__ = ["SubjectIndex", "identity_of"]

# phash bits (of 64) within which a reference counts as the same photo as an asset. Re-encoding and
# resizing move a hash by a few bits; two unrelated portraits differ by about half of them.
SAME_PHOTO_BITS = 12
# References larger than this are not inspected (the protocol layers limit bodies well below it).
_MAX_REFERENCE_BYTES = 20_000_000
_NUMBERED = re.compile(r"_\d+$")


def identity_of(asset: str) -> str:
    """The person an asset file shows: its stem without a trailing ``_<n>`` (``obama_2.jpg`` → ``obama``)."""
    stem = asset.rsplit(".", 1)[0]
    return _NUMBERED.sub("", stem)


class SubjectIndex:
    """Exact and perceptual fingerprints of the portrait assets; immutable once built."""

    def __init__(self, files: Mapping[str, bytes], images: Mapping[str, NDArray[np.uint8]]) -> None:
        self._by_sha = {hashlib.sha256(data).hexdigest(): name for name, data in files.items()}
        hashes: list[tuple[imagehash.ImageHash, str]] = []
        for name, rgb in images.items():
            hashes.append((_phash(rgb), name))
            hashes.append((_phash(np.ascontiguousarray(rgb[:, ::-1])), name))  # a mirrored copy
        self._hashes = tuple(hashes)

    def asset(self, data: bytes) -> str | None:
        """The asset ``data`` is a copy of, or ``None`` (never raises on hostile bytes)."""
        found = self._by_sha.get(hashlib.sha256(data).hexdigest())
        if found is not None or not data:
            return found
        try:
            rgb = decode_image(data, max_bytes=_MAX_REFERENCE_BYTES).rgb
        except ImageError:
            return None
        mine = _phash(rgb)
        distance, name = min(((mine - other, name) for other, name in self._hashes), default=(64, ""))
        return name if distance <= SAME_PHOTO_BITS else None

    def subject(self, references: Sequence[bytes]) -> str | None:
        """The identity most of ``references`` show (the first one's on a tie); ``None`` if none
        is recognised."""
        return _vote(identity_of(name) for data in references if (name := self.asset(data)) is not None)


def _vote(identities: Iterable[str]) -> str | None:
    counts = Counter(identities)  # insertion-ordered: most_common keeps the first on a tie
    return counts.most_common(1)[0][0] if counts else None


def _phash(rgb: NDArray[np.uint8]) -> imagehash.ImageHash:
    return imagehash.phash(Image.fromarray(rgb))
