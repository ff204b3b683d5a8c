"""A small async client for one ComfyUI server: its HTTP routes and its websocket feed.

Wire facts it relies on (observed on a real ComfyUI 0.3.64 server):

* a prompt is done when ``executing`` arrives with ``node: null`` and our ``prompt_id``; history is
  written just before that message, so ``/history/{id}`` is ``{}`` until then (even right after
  ``execution_success``);
* ``execution_start`` and the terminal message carry server ``timestamp``s (ms), kept in history too:
  their difference is the GPU time the prompt used, the basis of its charge;
* ``POST /prompt`` accepts our own ``prompt_id`` (0.3.4x and later; older servers pick one, and the
  answer's id is the one used), so an abandoned submission can be found even if its answer is lost;
* ``POST /interrupt`` with ``{prompt_id}`` interrupts only that prompt on current servers, and
  whatever runs on older ones: callers check ``/queue`` first;
* a validation failure is HTTP 400 with ``error`` and per-node ``node_errors``.

Every foreign error (httpx, websockets, pydantic) becomes an ``imagefunnel.errors`` type here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from imagefunnel.errors import ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.providers._http import transport_error
from imagefunnel.providers.comfyui_wire import (
    HistoryEntry,
    Message,
    OutputImage,
    QueuePayload,
    QueueState,
    RunResult,
    Submitted,
    Tracker,
    Uploaded,
    Wire,
    from_history,
    from_tracker,
    queue_ids,
    rejection,
)

__all__ = ["ComfyUIClient"]

_MAX_POLL_ERRORS = 3  # transient failures in a row tolerated while polling a paid-for prompt
_QUEUE_CHECK_EVERY = 8  # polls between checks that the prompt still exists
_W = TypeVar("_W", bound=Wire)


class ComfyUIClient:
    """HTTP and websocket calls to one server; errors name ``provider``."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        client: httpx.AsyncClient,
        headers: Mapping[str, str] | None = None,
        poll_interval_s: float = 0.5,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.provider = provider
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        self._client = client
        self._headers = dict(headers or {})
        self._poll_interval_s = poll_interval_s
        self._connect_timeout_s = connect_timeout_s

    def url(self, path: str) -> str:
        return str(self.base.join(path))  # relative: keeps a reverse proxy's path prefix

    # -- HTTP -------------------------------------------------------------------------------
    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        if self._client.is_closed:  # httpx would raise a bare RuntimeError (shutdown, Ctrl-C)
            raise ProviderUnavailable(f"{method} {url}: the HTTP client is closed", provider=self.provider)
        try:
            response = await self._client.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            # As the hosted adapters tell them apart: nothing sent (refused, no handshake), no answer
            # in time, or a connection that dropped after the request went (``ConnectionLost``:
            # the box may have queued it).
            raise transport_error(exc, f"{method} {url}", provider=self.provider) from exc
        if response.status_code == 429:
            raise RateLimited("HTTP 429", provider=self.provider)
        if response.is_server_error or response.status_code in {401, 403, 404, 405}:
            detail = response.text[:200].strip()
            raise ProviderUnavailable(
                f"{method} {url}: HTTP {response.status_code} {detail}", provider=self.provider
            )
        return response

    def parse(self, model: type[_W], response: httpx.Response, what: str) -> _W:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProviderUnavailable(f"malformed {what} response: {exc}", provider=self.provider) from exc

    async def get_json(self, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.send("GET", path, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(
                f"{what}: not JSON: {response.text[:80]!r}", provider=self.provider
            ) from exc
        if not isinstance(body, dict) or response.status_code != 200:
            raise ProviderUnavailable(f"{what}: HTTP {response.status_code}", provider=self.provider)
        return body

    async def queue(self) -> QueueState:
        state = self.parse(QueuePayload, await self.send("GET", "queue"), "queue")
        return QueueState(running=queue_ids(state.queue_running), pending=queue_ids(state.queue_pending))

    async def upload_image(self, data: bytes, filename: str, *, subfolder: str = "") -> str:
        """Upload to the input folder; returns the name ``LoadImage`` takes (``subfolder/name``)."""
        files = {"image": (filename, data, "application/octet-stream")}
        form = {"type": "input", "subfolder": subfolder, "overwrite": "true"}
        response = await self.send("POST", "upload/image", files=files, data=form)
        if response.status_code != 200:
            raise ProviderUnavailable(f"upload: HTTP {response.status_code}", provider=self.provider)
        uploaded = self.parse(Uploaded, response, "upload")
        return f"{uploaded.subfolder}/{uploaded.name}" if uploaded.subfolder else uploaded.name

    async def submit(self, graph: Mapping[str, Any], *, client_id: str, prompt_id: str) -> str:
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = await self.send("POST", "prompt", json=body)
        if response.status_code == 400:
            raise ProviderUnavailable(rejection(response), provider=self.provider)
        if response.status_code != 200:
            raise ProviderUnavailable(f"submit: HTTP {response.status_code}", provider=self.provider)
        return self.parse(Submitted, response, "submit").prompt_id

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        body = await self.get_json(f"history/{prompt_id}", "history")
        if prompt_id not in body:
            return None
        try:
            return HistoryEntry.model_validate(body[prompt_id])
        except ValidationError as exc:
            raise ProviderUnavailable(f"malformed history entry: {exc}", provider=self.provider) from exc

    async def interrupt(self, prompt_id: str) -> None:
        await self.send("POST", "interrupt", json={"prompt_id": prompt_id})

    async def delete(self, prompt_id: str) -> None:
        await self.send("POST", "queue", json={"delete": [prompt_id]})

    async def view(self, image: OutputImage, *, max_bytes: int, charged: float) -> bytes:
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        try:
            async with self._client.stream(
                "GET", self.url("view"), params=params, headers=self._headers
            ) as response:
                if response.status_code != 200:
                    detail = f"view {image.filename}: HTTP {response.status_code}"
                    raise ProviderUnavailable(detail, provider=self.provider, charged_usd=charged)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        detail = f"output larger than {max_bytes} bytes"
                        raise ProviderUnavailable(detail, provider=self.provider, charged_usd=charged)
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"view: {exc!r}", provider=self.provider, charged_usd=charged) from exc
        return b"".join(chunks)

    # -- websocket --------------------------------------------------------------------------
    async def connect(self, client_id: str) -> ClientConnection | None:
        """The feed for ``client_id``; ``None`` when the server (or a proxy) offers no websocket."""
        scheme = "wss" if self.base.scheme == "https" else "ws"
        url = str(self.base.join("ws").copy_with(scheme=scheme, params={"clientId": client_id}))
        try:
            return await connect(
                url,
                additional_headers=self._headers,
                open_timeout=self._connect_timeout_s,
                max_size=16 * 1024 * 1024,  # preview frames of large images
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500:
                raise ProviderUnavailable(f"websocket: HTTP {status}", provider=self.provider) from exc
            return None  # e.g. 404 from a proxy without websocket support: poll history instead
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ProviderUnavailable(f"websocket {url}: {exc!r}", provider=self.provider) from exc

    async def wait(self, ws: ClientConnection | None, prompt_id: str, tracker: Tracker) -> RunResult:
        """Follow ``prompt_id`` to its end; on a dropped (or absent) websocket, poll history."""
        tracker.prompt_id = prompt_id
        if ws is not None and await _follow(ws, prompt_id, tracker):
            entry = await self.history(prompt_id)
            if entry is None:  # history cleared by someone else: what the feed said is all we have
                return from_tracker(prompt_id, tracker)
            return from_history(prompt_id, entry, "websocket", tracker)
        entry = await self._poll(prompt_id)
        return from_history(prompt_id, entry, "polling", tracker)

    async def _poll(self, prompt_id: str) -> HistoryEntry:
        errors = 0
        polls = 0
        while True:
            try:
                entry = await self.history(prompt_id)
                if entry is not None:
                    return entry
                polls += 1
                if polls % _QUEUE_CHECK_EVERY == 0:
                    await self._still_queued(prompt_id)
                errors = 0
            except (ProviderUnavailable, RateLimited, ProviderTimeout):
                errors += 1  # the prompt is paid for if it runs: ride out a short blip
                if errors >= _MAX_POLL_ERRORS:
                    raise
            await asyncio.sleep(self._poll_interval_s)

    async def _still_queued(self, prompt_id: str) -> None:
        state = await self.queue()
        if prompt_id in state.running or prompt_id in state.pending:
            return
        if await self.history(prompt_id) is None:
            detail = f"prompt {prompt_id} left the queue without a history entry (deleted, or the server restarted)"
            raise ProviderUnavailable(detail, provider=self.provider)


async def _follow(ws: ClientConnection, prompt_id: str, tracker: Tracker) -> bool:
    """Read the feed until our ``executing {node: null}``; ``False`` if the connection dropped."""
    try:
        async for raw in ws:
            if isinstance(raw, bytes):
                continue  # binary preview frames
            try:
                message = Message.model_validate_json(raw)
            except ValidationError:
                continue
            # Other prompts' events (and broadcast status) are not ours to act on.
            if message.data.get("prompt_id") == prompt_id and tracker.observe(message):
                return True
    except ConnectionClosed:
        return False
    return False
