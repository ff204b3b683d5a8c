"""People's feedback on evaluated images, written as a labelled set that ``imagefunnel calibrate``
reads (images plus ``labels.json``, the dev-set format).

An accepted image is a clean example (no dimension should reject it); a rejected one is labelled
``human_reject`` and expects the dimensions the reviewer blamed, if any. Calibration then moves
each threshold so that accepted images pass and blamed dimensions catch what people rejected.
"""

from __future__ import annotations

from pathlib import Path

from imagefunnel.evaluation.manifest import DevSetError, DevSetManifest, LabeledImage, SourcePhoto
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.evaluations import EvaluationStore
from imagefunnel.store.tenancy import Tenancy

__all__ = ["HUMAN_REJECT", "export_feedback_set"]

HUMAN_REJECT = "human_reject"
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def export_feedback_set(
    store: Store, blobs: BlobStore, out: Path, *, tenant: str | None = None, evaluation_id: str | None = None
) -> DevSetManifest:
    tenant_id = Tenancy(store).ensure_tenant(tenant).id if tenant is not None else None
    entries = EvaluationStore(store).feedback(tenant_id=tenant_id, evaluation_id=evaluation_id)
    if not entries:
        raise DevSetError("no feedback recorded for that selection")
    if out.exists() and any(out.iterdir()):
        raise DevSetError(f"{out}: folder is not empty")
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for entry in entries:
        image = entry.image
        name = f"{image.evaluation_id[:12]}-{image.position:04d}.{_EXT.get(image.content_type, 'bin')}"
        (out / name).write_bytes(blobs.get(image.blob_sha256))
        images.append(
            LabeledImage(
                file=name,
                source="feedback",
                variant=entry.use_case,
                defect=None if entry.accepted else HUMAN_REJECT,
                strength=0.0 if entry.accepted else 1.0,
                expect=() if entry.accepted else entry.dimensions,
            )
        )
    manifest = DevSetManifest(
        seed=0,
        generator="imagefunnel evaluations export (human feedback)",
        sources=[
            SourcePhoto(
                name="feedback", person="various", origin="evaluations API uploads", license="tenant's own"
            )
        ],
        images=images,
    )
    manifest.write(out)
    return manifest
