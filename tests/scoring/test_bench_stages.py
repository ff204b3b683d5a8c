"""The scoring bench's per-stage CPU breakdown (``imagefunnel bench scoring``)."""

from __future__ import annotations

from scoring_fixtures import load_rgb

from imagefunnel.bench.scoring import ScoringBench, Throughput, stage_ms, summary_lines
from imagefunnel.evaluation.variants import encode_jpeg
from imagefunnel.scoring import Scorer


def test_stages_cover_decoding_and_every_dimension_costliest_first() -> None:
    scorer = Scorer(score_all=True)  # tier 1 and 3: no face models needed
    images = [encode_jpeg(load_rgb(name), 92) for name in ("biden", "obama_1")]
    stages = stage_ms(scorer, images)
    names = [name for name, _ in stages]
    assert set(names) == {"decode", *(d.name for d in scorer.dimensions)}
    costs = [ms for _, ms in stages]
    assert costs == sorted(costs, reverse=True) and all(ms >= 0.0 for ms in costs)


def test_summary_gives_images_per_core_against_the_target() -> None:
    run = Throughput(images=4, workers=2, wall_s=1.0, cpu_s=1.0)
    bench = ScoringBench(
        tier1=run,
        cascade=run,
        cascade_dimensions=("a", "b"),
        decode_ms=5.0,
        tier1_ms=10.0,
        report=None,
        stage_ms=(("ocr", 150.0), ("decode", 50.0)),
    )
    line = next(line for line in summary_lines(bench) if line.startswith("one image through"))
    assert "200 ms CPU = 5.00 images/s per core" in line and ": met)" in line
    assert "ocr 150.0 (75%)" in line
