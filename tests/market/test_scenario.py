from __future__ import annotations

from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.market import ProviderProfile, builtin_scenarios, load_scenario
from imagefunnel.market.defects import Defect

BASE = "name: t\nproviders:\n  - {name: a, protocol: fal, models: [fal-ai/flux/dev], price_usd_per_mp: 0.01"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_has_distinct_cheap_fast_and_flaky_providers() -> None:
    demo = load_scenario("demo")
    assert len(demo.providers) >= 3
    assert all(p.protocol == "fal" for p in demo.providers)
    assert len({p.price_usd_per_mp for p in demo.providers}) == len(demo.providers)
    assert len({p.defect_rate for p in demo.providers}) == len(demo.providers)
    assert len({p.identity_drift_rate for p in demo.providers}) == len(demo.providers)
    # Realistic seconds, played fast enough that no request takes a wall second.
    assert all((p.queue_s[1] + p.processing_s[1]) * demo.time_factor < 1.0 for p in demo.providers)
    assert any(p.error_5xx_rate > 0 and p.garbage_rate > 0 for p in demo.providers)
    assert "fal-ai/flux/dev" in set.intersection(*(set(p.models) for p in demo.providers))


def test_demo_has_a_spot_priced_comfyui_box_and_face_defects() -> None:
    demo = load_scenario("demo")
    (box,) = demo.comfyui_boxes
    assert "fal-ai/flux/dev" in box.models and box.price_schedule
    assert 0.3 <= box.usd_per_hour <= 0.8
    # A 20-step 512 px image costs a fraction of a cent and takes a fraction of a wall second.
    gpu_s = 20 * box.seconds_per_step
    assert gpu_s * max(p.usd_per_hour for p in box.price_schedule) / 3600 < 0.001
    assert gpu_s * demo.time_factor < 0.5
    mixes = [set(p.defect_mix) for p in demo.providers] + [set(box.defect_mix)]
    face = {Defect.CLOSED_EYES, Defect.EXTRA_FACE, Defect.HARSH_SHADOW, Defect.FACE_CUT}
    assert face <= set.union(*mixes)
    assert box.identity_drift_rate > 0


def test_box_names_must_not_clash_with_providers(tmp_path: Path) -> None:
    box = "comfyui_boxes: [{name: a, models: [m]}]\n"
    with pytest.raises(SpecError, match="duplicate provider names: a"):
        load_scenario(write(tmp_path, BASE + "}\n" + box))
    scenario = load_scenario(write(tmp_path, BASE + "}\n" + box.replace("name: a", "name: gpu")))
    assert scenario.box("gpu").models == ("m",) and scenario.time_factor == 1.0


def test_builtins_are_listed_and_all_load() -> None:
    names = builtin_scenarios()
    assert {"demo", "steady"} <= set(names)
    for name in names:
        assert load_scenario(name).name == name


def test_unknown_builtin_suggests_the_closest_name() -> None:
    with pytest.raises(SpecError, match="did you mean 'demo'"):
        load_scenario("dmeo")


def test_file_path_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, BASE + "}\n"))
    assert scenario.provider("a").price_at(0) == 0.01


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (
            ", queue_s: [2, 1]}",
            "providers[0].queue_s",
            "3:81: providers[0].queue_s: range [2.0, 1.0] has min > max",
        ),
        (", defect_rate: 1.5}", "providers[0].defect_rate", "3:81: providers[0].defect_rate: must be ≤ 1.0"),
        (
            ", defect_mix: {smudge: 1}}",
            "providers[0].defect_mix.smudge",
            "3:94: providers[0].defect_mix.smudge: is not an accepted key: Input should be 'blur', ",
        ),
        (
            ", outages: [{start_s: 5, end_s: 1}]}",
            "providers[0].outages[0]",
            "3:91: providers[0].outages[0]: outage ends (1.0) before it starts (5.0)",
        ),
        (
            ", typo_rate: 0.1}",
            "providers[0].typo_rate",
            "3:81: providers[0].typo_rate: is not a known field (did you mean 'defect_rate'?)",
        ),
        (
            ", defect_rate: true}",
            "providers[0].defect_rate",
            "3:81: providers[0].defect_rate: must be a number",
        ),
    ],
)
def test_invalid_fields_are_named_with_file_line_and_column(
    tmp_path: Path, extra: str, field: str, message: str
) -> None:
    path = write(tmp_path, BASE + extra + "\n")
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}:{message}")
    assert "(+" not in str(info.value)  # the provider list's own "too short" only repeats it


def test_yaml_errors_are_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nproviders: [\n  {a: b\n")
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert (
        str(info.value)
        == f"{path}:4:1: expected ',' or '}}', but got '<stream end>' (while parsing a flow mapping at 3:3)"
    )
    assert info.value.line == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: &n t\n", "1:7: YAML anchors (&n) are not accepted: write the value out"),
        ("name: t\nname: u\n", "2:1: name: duplicate key (first at 1:1)"),
        ("name: !!binary dA==\n", "1:7: explicit YAML tags (!!binary) are not accepted"),
        ("seed: " + "1" * 5000 + "\n", "1:7: an integer has more than 30 digits"),
        ("name: " + "[" * 1000 + "]" * 1000 + "\n", "1:26: nests deeper than 20 levels"),
    ],
)
def test_hostile_scenario_files_are_refused_with_their_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}:{message}"


def test_duplicate_and_reserved_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="duplicate"):
        load_scenario(write(tmp_path, BASE + "}\n" + BASE.split("\n", 2)[2] + "}\n"))
    with pytest.raises(SpecError, match="reserved"):
        load_scenario(write(tmp_path, BASE.replace("name: a", "name: files") + "}\n"))


def test_price_schedule_and_outages_follow_scenario_time() -> None:
    profile = ProviderProfile.model_validate(
        {
            "name": "p",
            "protocol": "fal",
            "models": ["fal-ai/flux/dev"],
            "price_usd_per_mp": 0.03,
            "price_schedule": [{"after_s": 10, "usd_per_mp": 0.02}, {"after_s": 20, "usd_per_mp": 0.01}],
            "outages": [{"start_s": 5, "end_s": 6}],
            "defect_mix": {"blur": 1, "noise": 2},
        }
    )
    assert [profile.price_at(t) for t in (0, 10, 15, 20, 99)] == [0.03, 0.02, 0.02, 0.01, 0.01]
    assert [profile.outage_at(t) for t in (4.9, 5, 5.9, 6)] == [False, True, True, False]
    assert profile.defect_mix == {Defect.BLUR: 1, Defect.NOISE: 2}


def test_model_ids_must_be_fal_endpoint_ids(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="owner/alias"):
        load_scenario(write(tmp_path, BASE.replace("fal-ai/flux/dev", "flux") + "}\n"))
