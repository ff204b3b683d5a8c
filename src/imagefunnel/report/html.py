"""A self-contained HTML report of one job: thumbnails inline, every verdict explained."""

from __future__ import annotations

import base64
import io
from collections import Counter
from pathlib import Path

import jinja2
from PIL import Image, UnidentifiedImageError

from imagefunnel.errors import ImageError, StoreError
from imagefunnel.funnel.result import JobResult
from imagefunnel.imaging import decode_image
from imagefunnel.store import BlobStore

THUMB_PX = 224


def _thumbnail(data: bytes) -> str | None:
    try:
        rgb = decode_image(data).rgb
    except ImageError:
        return None
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_PX, THUMB_PX))
    out = io.BytesIO()
    try:
        image.save(out, format="JPEG", quality=80)
    except (OSError, UnidentifiedImageError):  # pragma: no cover - decoded RGB always encodes
        return None
    return base64.b64encode(out.getvalue()).decode("ascii")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("imagefunnel.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def render_report(result: JobResult, blobs: BlobStore) -> str:
    thumbs: dict[int, str | None] = {}
    for cand in result.candidates:
        try:
            thumbs[cand.id] = _thumbnail(blobs.get(cand.blob_sha256))
        except StoreError:
            thumbs[cand.id] = None
    rejections = Counter(d.dimension for c in result.candidates for d in c.dimensions if not d.passed)
    delivered = sorted((c for c in result.candidates if c.delivered), key=lambda c: c.rank or 0)
    return (
        _environment()
        .get_template("job.html.j2")
        .render(
            r=result,
            thumbs=thumbs,
            rejections=rejections.most_common(),
            delivered=delivered,
            spare=[c for c in result.candidates if c.passed and not c.delivered],
            rejected=[c for c in result.candidates if not c.passed],
        )
    )


def write_report(result: JobResult, blobs: BlobStore, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, blobs), encoding="utf-8")
    return path
