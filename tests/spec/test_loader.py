import re
from importlib import resources
from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.spec import load_spec, parse_spec

VALID = """\
name: headshots
prompts:
  - a corporate headshot
deliver: 4
budget_usd: 2.5
"""


def test_valid_spec_gets_defaults() -> None:
    spec = parse_spec(VALID)
    assert spec.deliver == 4
    assert spec.candidate_cap == 16  # 4x K by default, as the seed workflow did
    assert spec.size.width == 512


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (VALID.replace("deliver: 4", "deliver: -3"), "deliver", "<spec>:4:1: deliver: must be ≥ 1"),
        (
            VALID.replace("budget_usd: 2.5", "budget_usd: 0"),
            "budget_usd",
            "<spec>:5:1: budget_usd: must be > 0",
        ),
        (VALID + "colour: red\n", "colour", "<spec>:6:1: colour: is not a known field"),
        (VALID + "size:\n  width: 10\n", "size.width", "<spec>:7:3: size.width: must be ≥ 64"),
        (
            VALID + "rules:\n  - sharpness >= 0.2\n  - make it pretty\n",
            "rules[1].expr",
            "<spec>:8:5: rules[1].expr: rule 'make it pretty' must look like 'dimension >= number'",
        ),
        (
            VALID.replace("prompts:\n  - a corporate headshot\n", ""),
            "prompts",
            "<spec>: prompts: is required (only background_removal takes no prompt)",
        ),
    ],
)
def test_errors_name_file_field_line_and_column(text: str, field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == field
    assert str(info.value).startswith(message)
    position = message.split(": ", 1)[0].split(":")[1:]
    assert info.value.line == (int(position[0]) if position else None)


def test_deliver_minus_three_message_is_exact() -> None:
    with pytest.raises(SpecError, match=r"^job\.yaml:4:1: deliver: must be ≥ 1$"):
        parse_spec(VALID.replace("deliver: 4", "deliver: -3"), source="job.yaml")


@pytest.mark.parametrize(
    "text",
    ["", "- just\n- a list\n", "prompts: [unclosed\n", "a: !!python/object/apply:os.system ['echo hi']\n"],
)
def test_not_a_spec_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(text)


def test_yaml_syntax_error_is_one_line_naming_file_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nprompts: [a\ndeliver: 2\n", source="job.yaml")
    message = str(info.value)
    assert message.startswith("job.yaml:3:8: expected ',' or ']', but got ':'")
    assert "flow sequence at 2:10" in message  # where the unclosed bracket opened
    assert "<unicode string>" not in message and "\n" not in message
    assert info.value.line == 3


def test_a_typo_is_reported_before_the_required_field_it_leaves_missing() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(VALID.replace("deliver: 4", "delivr: 4"), source="job.yaml")
    assert str(info.value) == "job.yaml:4:1: delivr: is not a known field (did you mean 'deliver'?) (+1 more)"
    assert info.value.field == "delivr"


def test_a_nested_typo_suggests_the_nested_model_field() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(VALID + "size:\n  widht: 640\n")
    assert str(info.value) == "<spec>:7:3: size.widht: is not a known field (did you mean 'width'?)"
    with pytest.raises(
        SpecError, match=r"rules\[0\]\.severty: is not a known field \(did you mean 'severity'\?\)"
    ):
        parse_spec(VALID + "rules:\n  - {expr: 'noise < 3', severty: warn}\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("deliver: 5\n", "<spec>:6:1: deliver: duplicate key (first at 4:1)"),
        ("score_all: true\nseed: true\n", "<spec>:7:1: seed: must be a number, not true/false"),
        (
            "thresholds: {sharpness: '0.2'}\n",
            "<spec>:6:14: thresholds.sharpness: must be a number, not quoted text",
        ),
        ("seed: 010\n", "<spec>:6:7: the number '010' is ambiguous in YAML: quote it or drop the zeros"),
        (
            "deadline_s: 1:30\n",
            "<spec>:6:13: the number '1:30' is ambiguous in YAML: quote it or drop the zeros",
        ),
        ("name2: 2024-13-45\n", "<spec>:6:8: '2024-13-45' is not a valid timestamp"),
    ],
)
def test_what_lax_yaml_would_accept_silently_is_refused_with_its_line(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(VALID + extra)
    assert str(info.value) == message


def test_deliver_true_is_not_one() -> None:
    with pytest.raises(SpecError, match=r"^<spec>:4:1: deliver: must be a number, not true/false$"):
        parse_spec(VALID.replace("deliver: 4", "deliver: true"))


def test_binary_prompt_is_refused_not_decoded() -> None:
    with pytest.raises(SpecError, match=r"^<spec>:3:5: explicit YAML tags \(!!binary\) are not accepted$"):
        parse_spec(VALID.replace("- a corporate headshot", "- !!binary aGVsbG8="))


def test_booleans_still_fill_boolean_fields() -> None:
    spec = parse_spec(VALID + "score_all: yes\nbrief: {allow_text: true}\n")
    assert spec.score_all is True and spec.brief.allow_text is True


def test_max_candidates_below_deliver_is_rejected() -> None:
    with pytest.raises(SpecError, match="max_candidates"):
        parse_spec(VALID + "max_candidates: 2\n")


def test_rules_accept_strings_and_long_form() -> None:
    spec = parse_spec(VALID + "rules:\n  - sharpness >= 0.2\n  - {expr: 'noise <= 3', severity: warn}\n")
    assert [(r.dimension, r.op, r.value) for r in spec.rules] == [
        ("sharpness", ">=", 0.2),
        ("noise", "<=", 3.0),
    ]
    assert spec.rules[1].severity == "warn"


def test_load_spec_resolves_references_next_to_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(VALID + "references: [ref/me.jpg]\n")
    spec = load_spec(path)
    assert spec.references == [tmp_path / "ref" / "me.jpg"]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")


def test_huge_or_deep_spec_is_refused() -> None:
    with pytest.raises(SpecError, match="larger than"):
        parse_spec("name: " + "x" * 1_100_000)
    deep = "a: " + "[" * 30 + "]" * 30
    with pytest.raises(SpecError, match=r"^<spec>:1:23: nests deeper than 20 levels$"):
        parse_spec(deep)


def test_a_file_that_is_not_utf8_names_the_line_without_echoing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(VALID.encode() + b"name2: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}:6:11: is not UTF-8 text"


def test_load_spec_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(VALID.replace("deliver: 4", "delivr: 4"))
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:4:1: delivr: is not a known field"):
        load_spec(path)


def test_a_big_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"#" * 3_000_000)
    with pytest.raises(SpecError, match="larger than 1000000 bytes"):
        load_spec(path)


def test_shipped_examples_still_load() -> None:
    folder = resources.files("imagefunnel.spec") / "examples"
    names = [item.name for item in folder.iterdir() if item.name.endswith(".yaml")]
    assert names
    for name in names:
        parse_spec((folder / name).read_bytes(), source=name)
