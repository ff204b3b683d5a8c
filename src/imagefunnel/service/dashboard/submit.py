"""The jobs page's submit form: a spec pasted or chosen as a file, optional photos, one POST.

The form posts ``multipart/form-data`` to ``/jobs/new`` and needs no script: photos become the
tenant's uploads (checked as every image is) and are added to the spec as ``upload:<id>`` names
(``references`` after the spec's own, ``source`` for the input photo); the job is queued exactly as
``POST /v1/jobs`` queues it, and the browser is sent to the job's live page. A refusal renders the
jobs page again with the API's one-line message and the spec text kept, both escaped by Jinja.

Cross-site requests: the sign-in cookie is ``SameSite=Strict`` (another site's form is sent without
it, so it is not signed in), and a request whose ``Origin`` or ``Sec-Fetch-Site`` says it came from
another site is refused before anything is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from imagefunnel.errors import ImageFunnelError
from imagefunnel.service.api.jobs import queue_job
from imagefunnel.service.api.uploads import file_name, store_upload
from imagefunnel.service.deps import get_runtime
from imagefunnel.service.errors import ApiError, as_api_error
from imagefunnel.service.inputs import spec_with_images
from imagefunnel.service.references import upload_ref
from imagefunnel.service.runtime import ServiceRuntime
from imagefunnel.store.tenancy import Tenant

__all__ = ["MAX_FORM_PHOTOS", "install_submit"]

MAX_FORM_PHOTOS = 16  # reference photos in one form (a spec may name more uploads by id)

JobsPage = Callable[..., Response]


def _same_site(request: Request) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by every browser on a same-origin POST; the cookie is Strict anyway
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def _text(form: FormData, *, max_bytes: int) -> str:
    part = form.get("spec_file")
    if isinstance(part, UploadFile) and part.filename:
        raw = await part.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise ApiError(413, "spec_too_large", f"spec is larger than {max_bytes} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_encoding", "spec file must be UTF-8") from None
    text = form.get("spec")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "invalid_spec", "paste a spec or choose a spec file")
    return text


async def _photos(runtime: ServiceRuntime, tenant: Tenant, parts: list[UploadFile]) -> list[str]:
    refs = []
    limit = runtime.settings.max_image_bytes
    for index, part in enumerate(parts):
        name = file_name(part.filename, f"photo-{index + 1}")
        data = await part.read(limit + 1)
        upload, _ = await asyncio.to_thread(store_upload, runtime, tenant, name, data)
        refs.append(upload_ref(upload.id))
    return refs


def _chosen(form: FormData, field: str) -> list[UploadFile]:
    # A file input left empty still sends a part, with no file name and no bytes.
    return [p for p in form.getlist(field) if isinstance(p, UploadFile) and p.filename]


async def _read_form(request: Request, runtime: ServiceRuntime) -> FormData:
    s = runtime.settings
    try:
        return await request.form(max_files=MAX_FORM_PHOTOS + 2, max_fields=4, max_part_size=s.max_spec_bytes)
    except (HTTPException, MultiPartException) as exc:
        detail = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise ApiError(400, "invalid_form", f"the form could not be read: {detail}") from None


async def _submit(form: FormData, runtime: ServiceRuntime, tenant: Tenant) -> str:
    """The id of the job the form queues; ApiError says why none was."""
    s = runtime.settings
    text = await _text(form, max_bytes=s.max_spec_bytes)
    references = _chosen(form, "references")
    if len(references) > MAX_FORM_PHOTOS:
        raise ApiError(413, "too_many_images", f"at most {MAX_FORM_PHOTOS} reference photos in one form")
    try:
        refs = await _photos(runtime, tenant, references)
        source = await _photos(runtime, tenant, _chosen(form, "source")[:1])
        spec = spec_with_images(
            text,
            references=refs,
            source=source[0] if source else None,
            max_bytes=s.max_spec_bytes,
            max_depth=s.max_json_depth,
        )
        row, _ = await queue_job(runtime, tenant, spec)
    except ImageFunnelError as exc:
        raise as_api_error(exc) from None
    return row.id


def install_submit(page: JobsPage, tenant_of: Callable[[Request], Tenant | None]) -> APIRouter:
    """The form's route; ``page(request, tenant, error=, spec_text=, status_code=)`` renders the jobs page."""
    router = APIRouter(include_in_schema=False)

    @router.post("/jobs/new")
    async def submit_job_form(request: Request) -> Response:
        if not _same_site(request):
            raise ApiError(403, "cross_site", "a job can be submitted only from this dashboard")
        tenant = tenant_of(request)
        if tenant is None:
            return RedirectResponse("/login", status_code=303)
        runtime = get_runtime(request)
        form: FormData | None = None
        try:
            form = await _read_form(request, runtime)
            job_id = await _submit(form, runtime, tenant)
        except ApiError as exc:
            kept = form.get("spec") if form is not None else None
            text = kept if isinstance(kept, str) else ""
            return page(request, tenant, error=exc.message, spec_text=text, status_code=exc.status)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    return router
