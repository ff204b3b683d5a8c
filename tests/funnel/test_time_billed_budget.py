"""A GPU-second-billed box charges more than it quotes: the budget holds its worst case, never overruns."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from imagefunnel.cli.demo import demo_spec, market_providers
from imagefunnel.cli.runner import JobSource, run_job
from imagefunnel.market.server import MarketServer


@pytest.mark.parametrize("budget", [0.003, 0.006])
def test_a_job_on_the_demo_box_never_spends_more_than_its_budget(budget: float, tmp_path: Path) -> None:
    # Before the worst case was held, these budgets ended at $0.0044 and $0.0068 spent.
    spec = demo_spec().model_copy(update={"budget_usd": budget, "deliver": 12, "max_candidates": 60})
    with MarketServer("demo") as market:
        outputs = run_job(
            spec,
            market_providers(market, spec.model),
            source=JobSource(tmp_path),
            console=Console(quiet=True),
        )
    result = outputs.result
    assert result.spent_usd <= budget + 1e-12
    assert result.candidates_generated >= 1  # the box is still used, not refused outright
    assert any(p.charged_usd > p.quoted_usd for p in result.providers)  # the overrun the hold covers
    assert "worst case" in result.stop_reason or result.delivered == 12
