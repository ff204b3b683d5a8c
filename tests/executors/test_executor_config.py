"""Executor URLs and the picklable scorer configuration."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.executors import ExecutorChoice, ExecutorError, ScorerConfig, parse_executor_url
from imagefunnel.spec import JobSpec


@pytest.mark.parametrize(
    ("url", "choice"),
    [
        ("local://threads", ExecutorChoice()),
        ("local://threads?workers=3", ExecutorChoice(workers=3)),
        ("local://processes", ExecutorChoice(kind="processes")),
        ("local://processes?workers=2&start=forkserver", ExecutorChoice("processes", 2, "forkserver")),
        ("ray", ExecutorChoice(kind="ray")),
        ("ray?workers=2", ExecutorChoice(kind="ray", workers=2)),
        ("ray://head:10001", ExecutorChoice(kind="ray", address="ray://head:10001")),
        ("ray://10.0.0.5", ExecutorChoice(kind="ray", address="ray://10.0.0.5:10001")),
        ("ray://head:20001?workers=8", ExecutorChoice(kind="ray", workers=8, address="ray://head:20001")),
    ],
)
def test_executor_urls_are_parsed(url: str, choice: ExecutorChoice) -> None:
    assert parse_executor_url(url) == choice


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("local://gpus", "expected local://"),
        ("rayy", "expected local://"),
        ("ray://", "expected ray://host:port"),
        ("ray://head:port", "port must be a number"),
        ("ray://head:10001/path", "expected ray://host:port"),
        ("ray?workers=0", "workers must be"),
        ("ray?start=spawn", "unknown option start"),
        ("local://processes?workers=0", "workers must be"),
        ("local://processes?workers=two", "workers must be"),
        ("local://processes?start=fork", "start must be spawn or forkserver"),
        ("local://processes?worker=2", "unknown option worker"),
        ("local://processes?workers=1&workers=2", "workers given 2 times"),
    ],
)
def test_bad_executor_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(ExecutorError, match=why):
        parse_executor_url(url)


def _spec(references: list[Path]) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "t",
            "prompts": ["a headshot"],
            "deliver": 1,
            "budget_usd": 1.0,
            "use_case": "headshot",
            "references": references,
            "thresholds": {"sharpness": 5.0},
            "rules": [{"expr": "text_area == 0"}],
        }
    )


def test_a_config_from_a_spec_pickles_and_keeps_equality_and_hash(tmp_path: Path) -> None:
    ref = tmp_path / "ref.jpg"
    ref.write_bytes(b"\xff\xd8 not really a jpeg")
    config = ScorerConfig.from_spec(_spec([ref]))
    assert config.references == (ref.read_bytes(),)
    assert config.thresholds == (("sharpness", 5.0),) and config.use_case == "headshot"
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and hash(copy) == hash(config)
    assert copy != ScorerConfig(use_case="headshot")


def test_an_unreadable_or_undecodable_reference_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        ScorerConfig.from_spec(_spec([tmp_path / "missing.jpg"]))
    with pytest.raises(SpecError, match="reference photo 1"):
        ScorerConfig(use_case="headshot", references=(b"garbage",)).build()
