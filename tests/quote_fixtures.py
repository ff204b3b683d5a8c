"""A quote and a job result built by hand, for the tests of holding a job to its quote."""

from __future__ import annotations

from typing import Any

from imagefunnel.forecast import JobQuote, ProviderQuote
from imagefunnel.funnel.result import JobResult, ProviderSummary

__all__ = ["job_result", "quote"]


def quote(**over: Any) -> JobQuote:
    values: dict[str, Any] = {
        "deliver": 4, "budget_usd": 1.0, "deadline_s": 60.0, "candidate_cap": 40, "simulations": 100,
        "seed": 0, "pass_rates": "prior", "cold_start": True, "p_deliver": 0.97,
        "expected_spend_usd": 0.10, "spend_p50_usd": 0.10, "spend_p95_usd": 0.15,
        "expected_candidates": 6.0, "candidates_p95": 9.0, "expected_wall_s": 5.0, "wall_p95_s": 8.0,
        "stops": {"delivered": 0.97}, "confidence": 0.95, "needed_budget_usd": 0.2,
        "p_deliver_at_needed": 0.95, "p_deliver_unbounded": 0.99,
        "providers": [
            ProviderQuote(
                provider=name, quoted_usd=0.01, expected_usd=0.01, pass_rate_mean=0.6, pass_rate_alpha=2,
                pass_rate_beta=1, learned=False, cost_per_accepted_usd=0.02, latency_s=1.0, share=share,
                why="",
            )
            for name, share in (("a", 0.9), ("b", 0.1))
        ],
    }  # fmt: skip
    return JobQuote(**(values | over))


def job_result(*, spent: float, candidates: int, delivered: int, attempts: dict[str, int]) -> JobResult:
    providers = [
        ProviderSummary(
            provider=name, attempts=n, failed_attempts=0, candidates=n, passed=n, quoted_usd=0, charged_usd=0
        )
        for name, n in attempts.items()
    ]
    return JobResult(
        job_id="j", name="n", status="delivered" if delivered == 4 else "partial", stop_reason="",
        asked=4, delivered=delivered, candidates_generated=candidates, candidates_passed=delivered,
        failed_attempts=0, quoted_usd=spent, spent_usd=spent, providers=providers, candidates=[],
    )  # fmt: skip
