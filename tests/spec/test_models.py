"""Path fields of a spec: a path no file can have is refused with the field and line."""

from __future__ import annotations

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.spec.loader import parse_spec

BASE = "name: t\nprompts: [a headshot]\nbudget_usd: 1\ndeliver: 1\n"


@pytest.mark.parametrize(
    ("field", "yaml", "where"),
    [
        ("references", 'references: [ok.jpg, "a\\u0000b.jpg"]', "references[1]"),
        ("source", 'source: "a\\0b.jpg"', "source"),
    ],
)
def test_a_nul_byte_in_a_path_is_a_spec_error_not_a_value_error(field: str, yaml: str, where: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + yaml + "\n")
    assert str(info.value).endswith(f"{where}: contains a NUL byte (\\0), which no file name can hold")
    assert str(info.value).startswith("<spec>:5:")
    assert info.value.line == 5
    assert info.value.field == where


def test_ordinary_paths_are_kept() -> None:
    spec = parse_spec(BASE + "references: [me.jpg, photos/me 2.jpg]\n")
    assert [str(p) for p in spec.references] == ["me.jpg", "photos/me 2.jpg"]
