from __future__ import annotations

from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.spec import UseCase, load_spec, parse_spec


def test_background_removal_needs_a_source_and_no_prompt(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"x")
    (tmp_path / "job.yaml").write_text(
        "use_case: background_removal\nmodel: background-removal\nsource: photo.jpg\ndeliver: 1\nbudget_usd: 1\n"
    )
    spec = load_spec(tmp_path / "job.yaml")
    assert spec.use_case is UseCase.BACKGROUND_REMOVAL and spec.prompts == []
    assert spec.source == tmp_path / "photo.jpg"  # resolved against the spec's folder
    with pytest.raises(SpecError, match="needs 'source'"):
        parse_spec("use_case: background_removal\ndeliver: 1\nbudget_usd: 1\n")


def test_other_use_cases_still_need_a_prompt_and_briefs_are_checked() -> None:
    with pytest.raises(SpecError, match="prompts: is required") as info:
        parse_spec("use_case: product\ndeliver: 1\nbudget_usd: 1\n")
    assert info.value.line is None
    spec = parse_spec(
        "use_case: ad_creative\nprompts: [a red sneaker]\ndeliver: 1\nbudget_usd: 1\n"
        "brief: {palette: ['#c81e28'], safe_areas: [{x: 0, y: 0, width: 1, height: 0.25}]}\n"
    )
    assert spec.brief.palette == ["#c81e28"] and spec.brief.safe_areas[0].height == 0.25
    with pytest.raises(SpecError, match=r"brief\.palette\[0\]"):
        parse_spec("prompts: [x]\ndeliver: 1\nbudget_usd: 1\nbrief: {palette: [red]}\n")
    with pytest.raises(SpecError, match="inside the frame"):
        parse_spec(
            "prompts: [x]\ndeliver: 1\nbudget_usd: 1\nbrief: {safe_areas: [{x: 0.5, y: 0, width: 0.6, height: 1}]}\n"
        )
