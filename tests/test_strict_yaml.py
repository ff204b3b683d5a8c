"""The strict YAML loader: plain data with positions, or one precise line, fast, for hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from imagefunnel.errors import SpecError
from imagefunnel.strict_yaml import YamlInputError, load_yaml, read_yaml_file, validate


def refusal(text: str | bytes, **limits: int) -> str:
    with pytest.raises(YamlInputError) as info:
        load_yaml(text, source="in.yaml", **limits)
    message = str(info.value)
    assert "\n" not in message and "<unicode string>" not in message
    return message


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_data_and_positions_of_keys_and_items() -> None:
    data, positions = load_yaml("name: x\nitems:\n  - 1\n  - {k: true}\n", source="in.yaml")
    assert data == {"name": "x", "items": [1, {"k": True}]}
    assert positions[("name",)] == (1, 1)
    assert positions[("items",)] == (2, 1)
    assert positions[("items", 0)] == (3, 5)
    assert positions[("items", 1, "k")] == (4, 6)


def test_keys_are_the_text_written() -> None:
    data, _ = load_yaml("1: a\non: b\nnull: c\n", source="in.yaml")
    assert data == {"1": "a", "on": "b", "null": "c"}


def test_billion_laughs_is_refused_at_the_first_anchor() -> None:
    assert (
        refusal(billion_laughs()) == "in.yaml:1:5: YAML anchors (&a0) are not accepted: write the value out"
    )


def test_an_alias_alone_is_refused() -> None:
    assert refusal("a: *nowhere\n").startswith("in.yaml:1:4:")


def test_thousand_deep_nesting_is_refused_not_a_recursion_error() -> None:
    flow = "a: " + "[" * 1000 + "]" * 1000 + "\n"
    assert refusal(flow) == "in.yaml:1:23: nests deeper than 20 levels"
    block = "".join(" " * depth + "k:\n" for depth in range(1000)) + " " * 1000 + "v\n"
    assert refusal(block) == "in.yaml:21:21: nests deeper than 20 levels"


def test_a_5000_digit_integer_is_refused() -> None:
    assert refusal("n: " + "9" * 5000 + "\n") == "in.yaml:1:4: an integer has more than 30 digits"


def test_an_oversized_scalar_is_refused() -> None:
    assert refusal("s: '" + "x" * 10_001 + "'\n") == "in.yaml:1:4: a value is longer than 10000 characters"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "in.yaml:2:1: a: duplicate key (first at 1:1)"),
        ("a: !!binary aGVsbG8=\n", "in.yaml:1:4: explicit YAML tags (!!binary) are not accepted"),
        ("a: !!python/object/apply:os.system ['x']\n", "in.yaml:1:4: explicit YAML tags"),
        ("a: !custom {}\n", "in.yaml:1:4: explicit YAML tags (!custom) are not accepted"),
        ("a: 1\n---\nb: 2\n", "in.yaml:2:1: holds more than one YAML document"),
        ("? [a, b]\n: c\n", "in.yaml:1:3: mapping keys must be plain names"),
        ("a: b\x00c\n", "in.yaml:1:5: holds a character YAML does not allow (#x0000)"),
        ("a: [1, 2\n", "in.yaml:2:1: expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_refusals_name_line_and_column(text: str, message: str) -> None:
    assert refusal(text).startswith(message)


def test_bytes_that_are_not_utf8_are_located_not_echoed() -> None:
    assert refusal(b"a: 1\nb: \xff\xfe secret\n") == "in.yaml:2:4: is not UTF-8 text"


def test_a_utf8_bom_is_accepted() -> None:
    data, _ = load_yaml(b"\xef\xbb\xbfa: 1\n", source="in.yaml")
    assert data == {"a": 1}


def test_size_is_checked_before_parsing() -> None:
    assert refusal("a: " + "x" * 50, max_bytes=10) == "in.yaml: is larger than 10 bytes"


def test_refusals_are_spec_errors_with_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("a: 1\na: 2\n", source="in.yaml")
    assert isinstance(info.value, YamlInputError)
    assert (info.value.line, info.value.column, info.value.source) == (2, 1, "in.yaml")


def test_reading_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(YamlInputError, match=r"nope\.yaml: cannot read settings"):
        read_yaml_file(tmp_path / "nope.yaml", what="settings")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour: str
    weight: float = 1.0


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int
    inner: list[_Inner] = []


def test_validate_suggests_fields_of_the_nested_model() -> None:
    doc = load_yaml("count: 1\ninner:\n  - {color: red}\n", source="in.yaml")
    with pytest.raises(YamlInputError) as info:
        validate(_Outer, doc, source="in.yaml", what="a thing")
    assert (
        str(info.value)
        == "in.yaml:3:6: inner[0].color: is not a known field (did you mean 'colour'?) (+1 more)"
    )


def test_validate_points_a_nested_missing_field_at_its_mapping() -> None:
    doc = load_yaml("count: 1\ninner:\n  - {weight: 2}\n", source="in.yaml")
    with pytest.raises(YamlInputError, match=r"^in\.yaml:3:5: inner\[0\]\.colour: is required$"):
        validate(_Outer, doc, source="in.yaml", what="a thing")


def test_validate_refuses_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(YamlInputError, match=r"^in\.yaml: a thing must be a YAML mapping of fields$"):
        validate(_Outer, load_yaml("- 1\n", source="in.yaml"), source="in.yaml", what="a thing")


def test_the_number_of_values_is_bounded() -> None:
    assert refusal("a: [1, 2, 3]\n", max_nodes=3) == "in.yaml:1:5: holds more than 3 keys and values"


def test_the_wording_is_the_same_whichever_parser_ran_first() -> None:
    # libyaml reads "[[[[..." far ahead and stops at its own limit; the depth refusal is still ours.
    assert refusal("a: " + "[" * 2000 + "]" * 2000 + "\n") == "in.yaml:1:23: nests deeper than 20 levels"


@pytest.mark.parametrize(
    "text", ["a: [1, 2\n", "a: " + "[" * 2000 + "]" * 2000 + "\n", "a: &x 1\n", "a: 1\na: 2\n"]
)
def test_without_libyaml_the_refusals_are_the_same(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    with_libyaml = refusal(text)
    monkeypatch.setattr("imagefunnel.strict_yaml._document._FAST_LOADER", yaml.SafeLoader)
    assert refusal(text) == with_libyaml
