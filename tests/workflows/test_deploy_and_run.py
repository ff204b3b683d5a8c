"""Deployed workflows run on emulated ComfyUI boxes: pool, provider model, HTTP endpoint and CLI."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from imagefunnel.cli.app import app
from imagefunnel.errors import ProviderUnavailable
from imagefunnel.market.comfyui_app import ComfyUIServer
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.comfyui_workflow import load_workflow
from imagefunnel.routing import RouteContext, Router
from imagefunnel.store import Store
from imagefunnel.workflows import WorkflowRegistry, bind_values, detect_inputs
from imagefunnel.workflows.api import workflow_router
from imagefunnel.workflows.manifest import draft_inputs
from imagefunnel.workflows.pool import ComfyBox, ComfyPool
from imagefunnel.workflows.provider import WorkflowProvider

Start = Callable[..., ComfyUIServer]


def _deploy(tmp_path: Path, name: str) -> WorkflowRegistry:
    registry = WorkflowRegistry(tmp_path / "registry")
    flow = load_workflow(name)
    registry.add(name.replace("_", "-"), flow, draft_inputs(detect_inputs(flow)))
    return registry


def _png(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), (10, 200, 30), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


async def test_model_free_workflows_deploy_and_run(tmp_path: Path, start_box: Start) -> None:
    box = start_box(usd_per_hour=3.6)
    registry = _deploy(tmp_path, "empty_blur_save")
    scale = load_workflow("load_scale_save")
    registry.add("scale", scale, draft_inputs(detect_inputs(scale)))
    pool = ComfyPool([ComfyBox("box-a", box.url, 3.6)])
    blur = registry.get("empty-blur-save")
    run = await pool.run(
        blur, bind_values(blur.manifest, {"empty_image_color": "16711680", "width": "64", "height": "32"})
    )
    pixels = np.asarray(Image.open(io.BytesIO(run.images[0].data)).convert("RGB"))
    assert pixels.shape == (32, 64, 3) and tuple(pixels[16, 32]) == (0, 255, 255)  # red, inverted
    billed = box.billing()[-1]
    assert run.gpu_seconds == pytest.approx(billed.gpu_seconds) and run.usd == pytest.approx(billed.usd)
    deployed = registry.get("scale")
    values = bind_values(deployed.manifest, {"image": "uploaded", "width": "40", "height": "30"})
    scaled = await pool.run(deployed, values, {"image": _png()})
    assert Image.open(io.BytesIO(scaled.images[0].data)).size == (40, 30)
    await pool.aclose()


async def test_pool_skips_boxes_without_the_checkpoint_and_retries_elsewhere(
    tmp_path: Path, start_box: Start
) -> None:
    registry = _deploy(tmp_path, "txt2img")
    deployed = registry.get("txt2img")
    lacking = start_box("no-ckpt", checkpoints=("flux1-dev.safetensors",))
    failing = start_box("failing", error_rate=1.0, seconds_per_step=0.01)
    good = start_box("good", seconds_per_step=0.01)
    pool = ComfyPool(
        [
            ComfyBox("no-ckpt", lacking.url, 1.0),
            ComfyBox("failing", failing.url, 1.0),
            ComfyBox("good", good.url, 2.0),
        ]
    )
    health = {h.box: h for h in [await pool.health(box, deployed) for box in pool.boxes]}
    assert not health["no-ckpt"].up and "sd_xl_base_1.0.safetensors" in health["no-ckpt"].detail
    assert health["good"].up and health["failing"].up
    values = bind_values(deployed.manifest, {"prompt": "a studio headshot", "width": "256", "height": "256"})
    run = await pool.run(deployed, values)
    assert run.box == "good" and run.attempts == 2  # "failing" tried first (name order), then retried
    assert run.usd == pytest.approx(run.gpu_seconds * 2.0 / 3600) and run.gpu_seconds > 0
    await pool.aclose()
    lone = ComfyPool([ComfyBox("no-ckpt", lacking.url, 1.0)])
    with pytest.raises(ProviderUnavailable, match="no server could run workflow txt2img"):
        await lone.run(deployed, values)
    await lone.aclose()


async def test_deployed_workflow_is_a_provider_model_for_the_router(tmp_path: Path, start_box: Start) -> None:
    box = start_box(seconds_per_step=0.01)
    deployed = _deploy(tmp_path, "txt2img").get("txt2img")
    provider = WorkflowProvider(deployed=deployed, pool=ComfyPool([ComfyBox("box-a", box.url, 2.69)]))
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_job(job_id="j", name="workflow job", spec_json="{}", deliver=1)
    router = Router([provider], ledger=store)
    request = GenerationRequest(
        request_id="r1", model="workflow:txt2img", prompt="a headshot", width=256, height=256, seed=3
    )
    generation = await router.generate(request, RouteContext(job_id="j", wave=1, deadline=1e12))
    assert generation.provider == "comfyui-txt2img" and generation.charged_usd > 0
    assert Image.open(io.BytesIO(generation.image)).size == (256, 256)
    assert box.truth(generation.provider_request_id).seed == 3  # the request's seed reached the sampler
    await provider.aclose()
    store.close()


def test_http_endpoint_has_a_generated_schema_and_runs(tmp_path: Path, start_box: Start) -> None:
    box = start_box()
    registry = _deploy(tmp_path, "empty_blur_save")
    service = FastAPI()
    service.include_router(workflow_router(registry, ComfyPool([ComfyBox("box-a", box.url, 1.0)])))
    client = TestClient(service)
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schema["EmptyBlurSaveInputs"]["properties"]
    assert fields["width"]["type"] == "integer" and fields["image_blur_sigma"]["type"] == "number"
    ok = client.post("/v1/workflows/empty-blur-save/runs", json={"inputs": {"width": 16, "height": 8}})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["data_base64"])))
    assert image.size == (16, 8) and body["server"] == "box-a" and body["version"] == 1
    assert (
        client.post("/v1/workflows/empty-blur-save/runs", json={"inputs": {"width": "wide"}}).status_code
        == 422
    )
    assert client.post("/v1/workflows/empty-blur-save/runs", json={"inputs": {"nope": 1}}).status_code == 422
    assert client.post("/v1/workflows/missing/runs", json={"inputs": {}}).status_code == 404


def test_cli_add_and_run_offline(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    runner = CliRunner()
    workflow = Path(load_workflow.__code__.co_filename).parent / "workflows" / "empty_blur_save.json"
    added = runner.invoke(
        app, ["workflows", "add", str(workflow), "--name", "blur", "--emulate", "--registry", str(registry)]
    )
    assert added.exit_code == 0, added.output
    ran = runner.invoke(
        app,
        [
            "workflows",
            "run",
            "blur",
            "--set",
            "width=24",
            "--set",
            "height=12",
            "--emulate",
            "--registry",
            str(registry),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    [image] = list((tmp_path / "out").glob("*.png"))
    assert Image.open(image).size == (24, 12)
    bad = runner.invoke(
        app, ["workflows", "run", "blur", "--set", "widht=3", "--emulate", "--registry", str(registry)]
    )
    assert bad.exit_code != 0 and "did you mean 'width'" in str(bad.exception)


def test_service_hook_reads_registry_and_servers_from_the_environment(
    tmp_path: Path, start_box: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefunnel.workflows.api import create_router

    box = start_box()
    _deploy(tmp_path, "empty_blur_save")
    monkeypatch.setenv("IMAGEFUNNEL_WORKFLOWS", str(tmp_path / "registry"))
    monkeypatch.delenv("IMAGEFUNNEL_COMFYUI_SERVERS", raising=False)
    unserved = FastAPI()
    unserved.include_router(create_router())
    client = TestClient(unserved)
    assert [w["name"] for w in client.get("/v1/workflows").json()] == ["empty-blur-save"]
    assert client.post("/v1/workflows/empty-blur-save/runs", json={"inputs": {}}).status_code == 503
    monkeypatch.setenv("IMAGEFUNNEL_COMFYUI_SERVERS", box.url)
    served = FastAPI()
    served.include_router(create_router())
    ran = TestClient(served).post(
        "/v1/workflows/empty-blur-save/runs", json={"inputs": {"width": 8, "height": 8}}
    )
    assert ran.status_code == 200 and ran.json()["server"] == "box-1"
