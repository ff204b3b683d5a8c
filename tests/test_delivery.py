"""What a user gets from a job: the delivered images by rank, and results.json that points at them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from imagefunnel.cli.demo import demo_spec, market_providers
from imagefunnel.cli.runner import JobSource, RunOutputs, run_job
from imagefunnel.imaging import sniff_format
from imagefunnel.market.server import MarketServer


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOutputs, Path]:
    out = tmp_path_factory.mktemp("job")
    spec = demo_spec().model_copy(update={"deliver": 3, "max_candidates": 20, "seed": 13})
    with MarketServer("demo") as market:
        outputs = run_job(
            spec, market_providers(market, spec.model), source=JobSource(out), console=Console(quiet=True)
        )
    return outputs, out


def test_the_delivered_images_are_named_by_rank_with_their_real_extension(
    job: tuple[RunOutputs, Path],
) -> None:
    outputs, out = job
    files = sorted((out / "delivered").iterdir())
    assert (
        [f.stem for f in files]
        == ["01", "02", "03"]
        == [f"{r:02d}" for r in range(1, outputs.result.delivered + 1)]
    )
    by_rank = sorted((c for c in outputs.result.candidates if c.delivered), key=lambda c: c.rank or 0)
    for file, candidate in zip(files, by_rank, strict=True):
        data = file.read_bytes()
        assert file.suffix == {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[sniff_format(data)]
        assert (out / candidate.image_path).read_bytes() == data


def test_results_json_paths_are_relative_and_each_candidate_says_what_was_asked_and_paid(
    job: tuple[RunOutputs, Path],
) -> None:
    outputs, out = job
    spec = demo_spec()
    results = json.loads(outputs.results_json.read_text())
    assert results["candidates"]
    seeds = set()
    for candidate in results["candidates"]:
        path = Path(candidate["image_path"])
        assert not path.is_absolute() and (out / path).is_file()
        assert candidate["prompt"] in spec.prompts
        assert candidate["model"] == spec.model
        assert candidate["quoted_usd"] > 0 and candidate["charged_usd"] > 0
        seeds.add(candidate["seed"])
    assert len(seeds) == len(results["candidates"])  # one seed per request, none missing
    delivered = [c for c in results["candidates"] if c["delivered"]]
    assert all(c["image_path"].startswith("delivered/") for c in delivered)
