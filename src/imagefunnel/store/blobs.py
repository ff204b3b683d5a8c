"""Content-addressed blob store for image bytes (local directory)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from imagefunnel.errors import StoreError


class BlobStore:
    """Stores bytes under their SHA-256; writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StoreError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a crash never leaves a half-written blob.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"cannot write blob {digest}: {exc}") from exc
        return digest

    def delete(self, sha256: str) -> None:
        """Remove the blob (nothing if it is not there); the caller knows nothing else names it."""
        try:
            self.path(sha256).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot remove blob {sha256}: {exc}") from exc

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except OSError as exc:
            raise StoreError(f"blob {sha256} is missing: {exc}") from exc
