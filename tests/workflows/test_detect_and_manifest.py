from __future__ import annotations

from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.market.comfyui_catalog import node_catalog
from imagefunnel.providers.comfyui_workflow import Workflow, load_workflow
from imagefunnel.workflows import WorkflowRegistry, bind_values, detect_inputs
from imagefunnel.workflows.manifest import draft_inputs, parse_inputs
from imagefunnel.workflows.validate import check_workflow

SHARED = Path(__file__).parents[3] / "shared" / "comfyui" / "workflows"


def _object_info(checkpoints: tuple[str, ...] = ("sd_xl_base_1.0.safetensors",)) -> dict:
    return {n: s.object_info() for n, s in node_catalog(checkpoints=checkpoints, input_files=[]).items()}


def _kinds(workflow: Workflow, **kw: object) -> dict[str, tuple[str, bool]]:
    return {i.name: (i.kind, i.exposed) for i in detect_inputs(workflow, **kw)}  # type: ignore[arg-type]


def test_txt2img_and_img2img_roles_are_found_and_exposed() -> None:
    kinds = _kinds(load_workflow("txt2img"), object_info=_object_info())
    assert kinds["prompt"] == ("prompt", True) and kinds["negative_prompt"] == ("negative_prompt", True)
    assert kinds["seed"] == ("seed", True) and kinds["width"] == ("width", True)
    assert kinds["ksampler_sampler_name"] == ("choice", False)  # a widget, typed by /object_info
    assert kinds["checkpoint_loader_simple_ckpt_name"] == ("choice", False)
    assert kinds["ksampler_steps"] == ("int", False)
    assert _kinds(load_workflow("img2img"))["image"] == ("image", True)


def test_flux_sampler_custom_advanced_graph(flux: Workflow) -> None:
    found = {i.name: i for i in detect_inputs(flux)}
    assert found["prompt"].node == "6" and found["prompt"].input == "text"  # via guider and FluxGuidance
    assert found["seed"].node == "25" and found["seed"].input == "noise_seed"
    assert (found["width"].node, found["height"].default) == ("27", 1024)
    assert not found["flux_guidance_guidance"].exposed and found["flux_guidance_guidance"].kind == "float"


@pytest.mark.parametrize("name", ["empty_blur_save", "load_scale_save"])
def test_model_free_graphs_expose_every_widget(name: str) -> None:
    flow = load_workflow(SHARED / f"{name}.json") if SHARED.is_dir() else load_workflow(name)
    found = detect_inputs(flow, object_info=_object_info())
    assert found and all(item.exposed for item in found)
    assert "filename_prefix" not in {item.input for item in found}  # plumbing is never exposed
    if name == "load_scale_save":
        kinds = {i.name: i for i in found}
        assert kinds["image"].kind == "image" and kinds["image_scale_upscale_method"].choices[:1] == (
            "nearest-exact",
        )


def test_validation_names_missing_classes_models_and_inputs(flux: Workflow) -> None:
    info = _object_info()
    with pytest.raises(SpecError, match="no node class SamplerCustomAdvanced"):
        check_workflow(flux, draft_inputs(detect_inputs(flux)), info)
    txt2img = load_workflow("txt2img")
    inputs = draft_inputs(detect_inputs(txt2img))
    with pytest.raises(SpecError, match=r"no model file .sd_xl_base_1\.0\.safetensors. for ckpt_name"):
        check_workflow(txt2img, inputs, _object_info(checkpoints=("flux1-dev.safetensors",)))
    typo = parse_inputs("inputs:\n  steps: {node: '3', input: stepz, type: int}\n", source="inputs.yaml")
    with pytest.raises(SpecError, match="KSampler has no input 'stepz'"):
        check_workflow(txt2img, typo, info)
    checked = check_workflow(
        txt2img,
        {
            **inputs,
            **parse_inputs(
                "inputs:\n  steps: {node: '3', input: steps, type: int, default: 20}\n", source="x"
            ),
        },
        info,
    )
    assert (checked["steps"].min, checked["steps"].max) == (1.0, 10000.0)  # the server's range


def test_values_are_typed_checked_and_unknown_keys_refused(tmp_path: Path) -> None:
    registry = WorkflowRegistry(tmp_path)
    flow = load_workflow("txt2img")
    inputs = check_workflow(
        flow,
        {
            **draft_inputs(detect_inputs(flow)),
            **parse_inputs(
                "inputs:\n  steps: {node: '3', input: steps, type: int, default: 20}\n", source="x"
            ),
        },
        _object_info(),
    )
    deployed = registry.add("headshots", flow, inputs)
    assert bind_values(deployed.manifest, {"seed": "7", "steps": "30"})["seed"] == 7
    with pytest.raises(SpecError, match="outside"):
        bind_values(deployed.manifest, {"steps": "0"})
    with pytest.raises(SpecError, match="expected int"):
        bind_values(deployed.manifest, {"seed": "seven"})
    with pytest.raises(SpecError, match="did you mean 'steps'"):
        bind_values(deployed.manifest, {"stepz": "3"})


def test_registry_versions_and_is_idempotent(tmp_path: Path) -> None:
    registry = WorkflowRegistry(tmp_path)
    flow = load_workflow("empty_blur_save")
    inputs = draft_inputs(detect_inputs(flow))
    first = registry.add("blur", flow, inputs)
    assert registry.add("blur", flow, inputs).manifest.version == first.manifest.version == 1
    fewer = {k: v for k, v in inputs.items() if k != "width"}
    assert registry.add("blur", flow, fewer).manifest.version == 2
    assert (
        "width" in registry.get("blur", 1).manifest.inputs
        and "width" not in registry.get("blur").manifest.inputs
    )
    assert registry.names() == ["blur"]
    with pytest.raises(SpecError, match="did you mean 'blur'"):
        registry.get("blurr")
