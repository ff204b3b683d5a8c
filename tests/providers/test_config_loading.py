"""A providers file is read strictly: every refusal is one line naming the file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.providers.config import load_providers_file

ENTRY = "  - {name: r, protocol: replicate, models: [a/b], price: {unit: image, usd: 0.003}}\n"


def refusal(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "providers.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(SpecError) as info:
        load_providers_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message
    return message.removeprefix(f"{path}:")


def test_a_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n" + ENTRY)
    (config,) = load_providers_file(path).providers
    assert config.price is not None and config.price.usd == 0.003


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "providers:\n  - {name: r, protocl: replicate}\n",
            "2:15: providers[0].protocl: is not a known field",
        ),
        (
            "providers:\n" + ENTRY.replace("usd: 0.003", "usd: true"),
            "2:72: providers[0].price.usd: must be a",
        ),
        (
            "providers:\n" + ENTRY.replace("unit: image", "unti: image"),
            "2:59: providers[0].price.unti: is not a",
        ),
        ("providers: [\n", "2:1: expected the node content, but found '<stream end>'"),
        ("providers: &p []\nmore: *p\n", "1:12: YAML anchors (&p) are not accepted"),
        ("providers:\n" + ENTRY + "providers: []\n", "3:1: providers: duplicate key (first at 1:1)"),
        (b"providers:\n  - {name: \xff}\n", "2:12: is not UTF-8 text"),
    ],
)
def test_bad_files_are_refused_with_line_and_column(tmp_path: Path, text: str | bytes, message: str) -> None:
    assert refusal(tmp_path, text).startswith(message)


def test_a_typo_suggests_the_field(tmp_path: Path) -> None:
    assert "(did you mean 'protocol'?)" in refusal(
        tmp_path, "providers:\n  - {name: r, protocl: replicate}\n"
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: cannot read providers file"):
        load_providers_file(tmp_path / "nope.yaml")
