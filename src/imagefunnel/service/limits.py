"""Request body limits, enforced while the body arrives and before anything parses it.

An ASGI middleware counts the bytes of every request body: a ``Content-Length`` over the limit is
refused before a byte is read, and a body without one (chunked) is cut off as soon as it passes the
limit. The answer is a 413 with the JSON error body every other error has. Uploads get a larger
limit than the rest of the API (they carry images); both are settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagefunnel.service.errors import error_body

__all__ = ["BodyLimitMiddleware"]


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """``limit_for(path)`` gives the byte limit of a request to ``path``."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(str(scope.get("path", "")))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "invalid_content_length", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _refuse(send, 413, "body_too_large", f"request body over the limit of {limit} bytes")
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, "body_too_large", f"request body over the limit of {limit} bytes")
        except BaseExceptionGroup as group:  # anyio task groups wrap what a streaming reader raised
            if group.subgroup(_TooLarge) is None or started:
                raise
            await _refuse(send, 413, "body_too_large", f"request body over the limit of {limit} bytes")


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
