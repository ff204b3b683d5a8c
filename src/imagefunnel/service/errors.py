"""Every error the API answers is JSON: ``{"error": {"code": ..., "message": ...}}``, never a traceback.

Our own errors are mapped to status codes here, once: a bad spec or image is the client's (4xx), a
store that cannot be reached is ours (503). Anything unexpected is logged with its traceback and
answered as a bare 500 that names no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagefunnel.errors import ImageError, ImageFunnelError, ImageTooLarge, SpecError, StoreError
from imagefunnel.store.service_jobs import IdempotencyConflict, TenantBudgetExceeded
from imagefunnel.store.upload_lifecycle import UploadInUse
from imagefunnel.store.uploads import UploadQuotaExceeded

__all__ = ["ApiError", "as_api_error", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: status, a stable machine-readable code, a one-line message."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def _json(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def _own_error(exc: ImageFunnelError) -> tuple[int, str]:
    if isinstance(exc, IdempotencyConflict):
        return 409, "idempotency_conflict"
    if isinstance(exc, TenantBudgetExceeded):
        return 402, "tenant_budget_exceeded"
    if isinstance(exc, UploadQuotaExceeded):
        # 429, not 413: the image itself is within every size limit; the tenant has kept too many
        # (the message names the limit). Waiting does not help; deleting uploads does.
        return 429, "upload_quota_exceeded"
    if isinstance(exc, UploadInUse):
        return 409, "upload_in_use"
    if isinstance(exc, SpecError):
        return 422, "invalid_spec"
    if isinstance(exc, ImageTooLarge):
        return 413, "image_too_large"
    if isinstance(exc, ImageError):
        return 422, "invalid_image"
    if isinstance(exc, StoreError):
        return 503, "store_unavailable"
    return 400, "bad_request"


def as_api_error(exc: ImageFunnelError) -> ApiError:
    """Our own error as the API answers it (a store failure's detail is logged, not shown)."""
    status, code = _own_error(exc)
    if status >= 500:
        log.error("request failed: %s", exc)
        return ApiError(status, code, "the job store is unavailable; try again")
    return ApiError(status, code, str(exc))


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ImageFunnelError)
    async def _ours(_request: Request, exc: ImageFunnelError) -> JSONResponse:
        api = as_api_error(exc)
        return _json(api.status, api.code, api.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        message = str(exc.detail) if exc.detail else code
        return _json(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _json(500, "internal_error", "internal error")
