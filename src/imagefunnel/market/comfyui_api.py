"""ComfyUI's HTTP/websocket routes for one emulated box (served by ``comfyui_app.ComfyUIServer``).

Every route is also served under ``/api``, as the real server does. During an outage every call
answers 503 and the websocket handshake is refused with 503. A ``reset_rate`` fault resets the
connection of a ``POST /prompt`` after the prompt is queued (no HTTP answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from imagefunnel.market._shared import reset_connection, with_reset_hook
from imagefunnel.market.comfyui_runtime import BoxRuntime, QueueItem
from imagefunnel.market.comfyui_validate import validate_prompt
from imagefunnel.market.comfyui_worker import serve

__all__ = ["COMFYUI_VERSION", "MODEL_FOLDERS", "create_comfyui_app", "server_features"]

COMFYUI_VERSION = "0.3.64"
# The model folders a stock server lists at /models (folder_paths.folder_names_and_paths).
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
)  # fmt: skip
_MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size is 100 MB
_SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_FILE_TYPES = ("input", "output", "temp")


def create_comfyui_app(rt: BoxRuntime) -> ASGIApp:
    """The ASGI app of one box; its lifespan runs the prompt worker."""
    api = _ComfyApi(rt)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(serve(rt), name=f"comfyui-{rt.box.name}")
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", api.websocket),
        Route("/prompt", api.post_prompt, methods=["POST"]),
        Route("/prompt", api.get_prompt, methods=["GET"]),
        Route("/queue", api.get_queue, methods=["GET"]),
        Route("/queue", api.post_queue, methods=["POST"]),
        Route("/interrupt", api.interrupt, methods=["POST"]),
        Route("/history", api.get_history, methods=["GET"]),
        Route("/history", api.post_history, methods=["POST"]),
        Route("/history/{prompt_id}", api.get_history, methods=["GET"]),
        Route("/view", api.view, methods=["GET"]),
        Route("/upload/image", api.upload, methods=["POST"]),
        Route("/system_stats", api.system_stats, methods=["GET"]),
        Route("/object_info", api.object_info, methods=["GET"]),
        Route("/object_info/{node_class}", api.object_info, methods=["GET"]),
        Route("/features", api.features, methods=["GET"]),
        Route("/models", api.models, methods=["GET"]),
        Route("/models/{folder}", api.models, methods=["GET"]),
        Route("/embeddings", api.embeddings, methods=["GET"]),
        Route("/extensions", api.extensions, methods=["GET"]),
        Route("/free", api.free, methods=["POST"]),
    ]
    app = Starlette(routes=[Mount("/api", routes=routes), *routes], lifespan=lifespan)
    return _OutageGate(app, rt)


class _OutageGate:
    """503 for every HTTP call while the box is inside an outage window."""

    def __init__(self, app: ASGIApp, rt: BoxRuntime) -> None:
        self._app = app
        self._rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._rt.box.outage_at(self._rt.clock.now_s()):
            await PlainTextResponse("503: Service Unavailable", status_code=503)(scope, receive, send)
            return
        if scope["type"] == "http":
            scope = with_reset_hook(scope, send)  # a ``reset_rate`` fault drops the connection
        await self._app(scope, receive, send)


class _ComfyApi:
    def __init__(self, rt: BoxRuntime) -> None:
        self._rt = rt

    # -- websocket --------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        rt = self._rt
        if rt.box.outage_at(rt.clock.now_s()):
            await ws.send_denial_response(PlainTextResponse("503: Service Unavailable", status_code=503))
            return
        await ws.accept()
        sid = ws.query_params.get("clientId") or uuid.uuid4().hex
        rt.attach(sid, ws)
        try:
            await ws.send_text(
                json.dumps({"type": "status", "data": {"status": rt.queue_info(), "sid": sid}})
            )
            running = rt.running
            if running is not None and running.client_id == sid and rt.last_node is not None:
                # Like the real server: a reconnecting owner learns which node is running.
                await ws.send_text(json.dumps({"type": "executing", "data": {"node": rt.last_node}}))
            first = True
            while True:
                text = await ws.receive_text()
                if first and _is_feature_flags(text):
                    # Capability negotiation: the client's first message may carry its flags.
                    await ws.send_text(json.dumps({"type": "feature_flags", "data": server_features()}))
                first = False
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            rt.detach(sid, ws)

    # -- prompts ----------------------------------------------------------------------------
    async def post_prompt(self, request: Request) -> Response:
        rt = self._rt
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _bad_prompt("Prompt body is not valid JSON")
        if not isinstance(body, dict):
            return _bad_prompt("Prompt body must be a JSON object")
        number: float = float(body["number"]) if "number" in body else rt.next_number()
        if "number" not in body and body.get("front"):
            number = -number
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided"}
            return JSONResponse({"error": error | {"extra_info": {}}, "node_errors": {}}, status_code=400)
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            return _bad_prompt("'prompt' must be an object of nodes")
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        checked = validate_prompt(
            prompt, rt.catalog(), has_input_file=lambda name: rt.store.input_file(name) is not None
        )
        if not checked.ok:
            return JSONResponse({"error": checked.error, "node_errors": checked.node_errors}, status_code=400)
        extra = body.get("extra_data")
        extra_data = dict(extra) if isinstance(extra, dict) else {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        item = QueueItem(number, prompt_id, prompt, extra_data, checked.outputs)
        await rt.enqueue(item)
        if rt.resets(item):
            return await reset_connection(request)  # queued: it runs and bills, unanswered
        number_out = int(number) if float(number).is_integer() else number
        return JSONResponse(
            {"prompt_id": prompt_id, "number": number_out, "node_errors": checked.node_errors}
        )

    async def get_prompt(self, request: Request) -> Response:
        return JSONResponse(self._rt.queue_info())

    async def get_queue(self, request: Request) -> Response:
        running = self._rt.running
        return JSONResponse(
            {
                "queue_running": [running.wire()] if running is not None else [],
                "queue_pending": [item.wire() for item in self._rt.queue],
            }
        )

    async def post_queue(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return PlainTextResponse(_SERVER_TROUBLE, status_code=500)
        if body.get("clear"):
            await self._rt.delete(None)
        if isinstance(body.get("delete"), list):
            await self._rt.delete([str(prompt_id) for prompt_id in body["delete"]])
        return Response(status_code=200)

    async def interrupt(self, request: Request) -> Response:
        body = await _json_object(request) or {}
        prompt_id = body.get("prompt_id")
        self._rt.interrupt(str(prompt_id) if prompt_id else None)
        return Response(status_code=200)

    async def get_history(self, request: Request) -> Response:
        raw = request.query_params.get("max_items")
        try:
            max_items = int(raw) if raw is not None else None
        except ValueError:
            return PlainTextResponse("max_items must be an integer", status_code=400)
        prompt_id = request.path_params.get("prompt_id")
        return JSONResponse(self._rt.store.history(prompt_id, max_items))

    async def post_history(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return PlainTextResponse(_SERVER_TROUBLE, status_code=500)
        if body.get("clear"):
            self._rt.store.delete_history(None)
        if isinstance(body.get("delete"), list):
            self._rt.store.delete_history([str(prompt_id) for prompt_id in body["delete"]])
        return Response(status_code=200)

    # -- files ------------------------------------------------------------------------------
    async def view(self, request: Request) -> Response:
        query = request.query_params
        filename = query.get("filename")
        if not filename:
            return Response(status_code=404)
        if filename.startswith("/") or ".." in filename:
            return Response(status_code=400)
        kind = query.get("type", "output")
        if kind not in _FILE_TYPES:
            return Response(status_code=400)
        subfolder = query.get("subfolder", "")
        if subfolder.startswith("/") or ".." in subfolder.split("/"):
            return Response(status_code=403)
        name = posixpath.basename(filename)
        data = self._rt.store.file(kind, subfolder, name)
        if data is None:
            return Response(status_code=404)
        media_type = _CONTENT_TYPES.get(posixpath.splitext(name)[1].lower(), "application/octet-stream")
        return Response(data, media_type=media_type, headers={"Content-Disposition": f'filename="{name}"'})

    async def upload(self, request: Request) -> Response:
        async with request.form(max_part_size=_MAX_UPLOAD_BYTES) as form:
            image = form.get("image")
            if not isinstance(image, UploadFile) or not image.filename:
                return Response(status_code=400)
            kind = str(form.get("type") or "input")
            subfolder = str(form.get("subfolder") or "")
            overwrite = str(form.get("overwrite") or "") in {"true", "1"}
            filename = posixpath.basename(image.filename)
            if (
                kind not in _FILE_TYPES
                or subfolder.startswith("/")
                or ".." in subfolder.split("/")
                or not filename
            ):
                return Response(status_code=400)
            data = await image.read()
        name = self._rt.store.upload(kind, subfolder.strip("/"), filename, data, overwrite=overwrite)
        return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})

    # -- introspection ----------------------------------------------------------------------
    async def system_stats(self, request: Request) -> Response:
        box = self._rt.box
        vram = int(box.vram_gb * 1024**3)
        loaded = any(self._rt.cache)  # a checkpoint in VRAM once anything ran
        free = vram - (int(7.2 * 1024**3) if loaded else 0)
        system = {
            "os": "posix",
            "ram_total": 270_000_000_000,
            "ram_free": 240_000_000_000,
            "comfyui_version": COMFYUI_VERSION,
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.94",
            "required_templates_version": "0.1.94",
            "python_version": sys.version,
            "pytorch_version": "2.8.0+cu128",
            "embedded_python": False,
            "argv": ["main.py", "--listen", "0.0.0.0", "--port", "8188"],
        }
        device = {
            "name": f"cuda:0 {box.gpu_name} : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": vram,
            "vram_free": free,
            "torch_vram_total": vram - free,
            "torch_vram_free": 0,
        }
        return JSONResponse({"system": system, "devices": [device]})

    async def features(self, request: Request) -> Response:
        return JSONResponse(server_features())

    async def models(self, request: Request) -> Response:
        """``/models``: the model folders; ``/models/{folder}``: the files in one (404 if unknown)."""
        folder = request.path_params.get("folder")
        if folder is None:
            return JSONResponse(list(MODEL_FOLDERS))
        if folder not in MODEL_FOLDERS:
            return Response(status_code=404)
        files = list(self._rt.box.checkpoints) if folder == "checkpoints" else []
        return JSONResponse(files)

    async def embeddings(self, request: Request) -> Response:
        return JSONResponse([])  # embedding names without extension; this box has none

    async def extensions(self, request: Request) -> Response:
        return JSONResponse([])  # front-end extension scripts; a headless box serves none

    async def free(self, request: Request) -> Response:
        """``{"unload_models": true}`` drops what is loaded: the next prompt loads its checkpoint
        again (and pays for it); ``free_memory`` alone changes nothing an API client can see."""
        body = await _json_object(request) or {}
        if body.get("unload_models"):
            self._rt.cache.clear()
        return Response(status_code=200)

    async def object_info(self, request: Request) -> Response:
        catalog = self._rt.catalog()
        wanted = request.path_params.get("node_class")
        if wanted is not None:
            spec = catalog.get(wanted)
            return JSONResponse({wanted: spec.object_info()} if spec is not None else {})
        return JSONResponse({name: spec.object_info() for name, spec in catalog.items()})


def server_features() -> dict[str, Any]:
    """What ``/features`` and the websocket's ``feature_flags`` reply report."""
    return {"supports_preview_metadata": True, "max_upload_size": _MAX_UPLOAD_BYTES}


def _is_feature_flags(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "feature_flags"


def _bad_prompt(message: str) -> Response:
    """A malformed /prompt body: 400 with the validation-error shape (never a 500)."""
    error = {"type": "invalid_prompt", "message": message, "details": message, "extra_info": {}}
    return JSONResponse({"error": error, "node_errors": {}}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
