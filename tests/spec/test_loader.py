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
    ("text", "field", "line", "fragment"),
    [
        (VALID.replace("deliver: 4", "deliver: -3"), "deliver", 4, "must be ≥ 1"),
        (VALID.replace("budget_usd: 2.5", "budget_usd: 0"), "budget_usd", 5, "must be > 0"),
        (VALID + "colour: red\n", "colour", 6, "not a known field"),
        (VALID + "size:\n  width: 10\n", "size.width", 7, "must be ≥ 64"),
        (
            VALID + "rules:\n  - sharpness >= 0.2\n  - make it pretty\n",
            "rules[1].expr",
            8,
            "dimension >= number",
        ),
        (VALID.replace("prompts:\n  - a corporate headshot\n", ""), "prompts", None, "is required"),
    ],
)
def test_errors_name_field_and_line(text: str, field: str, line: int | None, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == field
    assert info.value.line == line
    assert fragment in str(info.value)
    if line is not None:
        assert f"(line {line})" in str(info.value)


def test_deliver_minus_three_message_is_exact() -> None:
    with pytest.raises(SpecError, match=r"^deliver: must be ≥ 1 \(line 4\)$"):
        parse_spec(VALID.replace("deliver: 4", "deliver: -3"))


@pytest.mark.parametrize(
    "text",
    ["", "- just\n- a list\n", "prompts: [unclosed\n", "a: !!python/object/apply:os.system ['echo hi']\n"],
)
def test_not_a_spec_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(text)


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nprompts: [a\ndeliver: 2\n")
    assert info.value.line is not None


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
    with pytest.raises(SpecError, match="deeper"):
        parse_spec(deep)
