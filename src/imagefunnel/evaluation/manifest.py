"""The labels of a development set: which file shows which source photo with which defect.

A dev set is a folder of images plus ``labels.json``. Each image is a clean variant of a real
portrait, or such a variant with one injected defect at a known strength, and names the dimensions
that should reject it. The file is the boundary: it is validated with pydantic on every load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imagefunnel.errors import ImageFunnelError

__all__ = ["MANIFEST_NAME", "DevSetError", "DevSetManifest", "LabeledImage", "SourcePhoto", "load_manifest"]

MANIFEST_NAME = "labels.json"
MAX_MANIFEST_BYTES = 20_000_000


class DevSetError(ImageFunnelError):
    """A development-set folder is missing, unreadable or its labels are malformed."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourcePhoto(_Frozen):
    """A real photo the set was made from, with where it came from and its licence."""

    name: str
    person: str
    origin: str
    license: str


class LabeledImage(_Frozen):
    """One image of the set. ``defect`` None means clean: no dimension should reject it."""

    file: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]  # a plain name in the folder
    source: str
    variant: str  # the clean variation it started from: "as_is", "soft", "side_lit", ...
    defect: str | None = None
    strength: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    expect: tuple[str, ...] = ()  # dimensions that should reject it (empty for clean images)

    @property
    def clean(self) -> bool:
        return self.defect is None

    @property
    def label(self) -> str:
        """``clean`` or the defect's name: the row of a confusion table."""
        return self.defect or "clean"

    @model_validator(mode="after")
    def _clean_expects_nothing(self) -> LabeledImage:
        if self.defect is None and (self.expect or self.strength):
            raise ValueError(f"{self.file}: a clean image has no strength and expects no rejection")
        return self


class DevSetManifest(_Frozen):
    """``labels.json``: how the set was made (seed, generator settings) and one label per image."""

    version: int = 1
    seed: int
    generator: str
    sources: list[SourcePhoto]
    images: list[LabeledImage]
    skipped: list[str] = Field(
        default_factory=list, description="combinations that could not be made, and why"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DevSetManifest:
        names = [image.file for image in self.images]
        if len(set(names)) != len(names):
            raise ValueError("image files are listed more than once")
        known = {source.name for source in self.sources}
        unknown = sorted({image.source for image in self.images} - known)
        if unknown:
            raise ValueError(f"images name sources not in 'sources': {', '.join(unknown)}")
        return self

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=1), encoding="utf-8")
        return path


def load_manifest(folder: Path) -> DevSetManifest:
    """Read and validate ``folder/labels.json``; DevSetError says what is wrong."""
    path = folder / MANIFEST_NAME
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DevSetError(f"{path}: larger than {MAX_MANIFEST_BYTES // 1_000_000} MB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DevSetError(f"{path}: cannot read the labels of a dev set: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DevSetError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return DevSetManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "labels"
        raise DevSetError(f"{path}: {where}: {first['msg']} (+{exc.error_count() - 1} more)") from exc
