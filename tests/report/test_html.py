from __future__ import annotations

import json

from imagefunnel.cli.demo import demo_spec
from imagefunnel.funnel import JobResult
from imagefunnel.funnel.result import CandidateResult
from imagefunnel.report import render_report
from imagefunnel.report.html import over_quote
from imagefunnel.spec import JobSpec, Rule
from imagefunnel.store import BlobStore


def test_results_json_round_trips(demo_run) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(demo_run.outputs.results_json.read_text())
    result = JobResult.model_validate(data)
    assert result == demo_run.outputs.result
    assert result.delivered == 4
    assert result.candidates_generated >= 4


def test_report_is_self_contained_and_explains_every_reject(demo_run) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result
    html = render_report(result, BlobStore(demo_run.out_dir / "blobs"))
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for cand in result.candidates:
        if not cand.passed:
            assert cand.failed
            for reason in cand.failed:
                assert reason.replace(">", "&gt;").replace("<", "&lt;") in html


def test_report_escapes_untrusted_text(demo_run) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result.model_copy(update={"name": "<img src=x onerror=alert(1)>"})
    html = render_report(result, BlobStore(demo_run.out_dir / "blobs"))
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def _spec_for(**update: object) -> JobSpec:
    # The demo run's own spec (see conftest), with ``update`` applied.
    base: dict[str, object] = {"deliver": 4, "max_candidates": 20, "seed": 13}
    return demo_spec().model_copy(update=base | update)


def test_report_shows_what_was_asked(demo_run) -> None:  # type: ignore[no-untyped-def]
    spec = _spec_for(
        thresholds={"sharpness": 0.3},
        rules=[Rule(expr="eyes_open >= 0.25", name="eyes wide"), Rule(expr="noise <= 4")],
        deadline_s=90,
    )
    html = render_report(demo_run.outputs.result, BlobStore(demo_run.out_dir / "blobs"), spec=spec)
    asked = html[html.index('id="spec"') :]
    for prompt in spec.prompts:
        assert prompt in asked
    for shown in (spec.model, "512 × 512", "$1.0000", "90 s", "sharpness: 0.3", "noise &lt;= 4"):
        assert shown in asked
    assert "eyes wide (eyes_open &gt;= 0.25)" in asked
    assert "<th>deliver (K)</th><td>4</td>" in asked and "<th>candidate cap (N)</th><td>20</td>" in asked


def test_report_without_a_spec_has_no_spec_section(demo_run) -> None:  # type: ignore[no-untyped-def]
    html = render_report(demo_run.outputs.result, BlobStore(demo_run.out_dir / "blobs"))
    assert 'id="spec"' not in html and 'id="over-budget"' not in html


def test_stop_reason_leads_the_page(demo_run) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result.model_copy(update={"stop_reason": "delivered 3 of 10: budget reached"})
    html = render_report(result, BlobStore(demo_run.out_dir / "blobs"))
    banner = html.index('id="outcome"')
    assert html.index("delivered 3 of 10: budget reached", banner) < html.index('class="kpis"')


def test_spend_above_budget_is_flagged(demo_run) -> None:  # type: ignore[no-untyped-def]
    result = demo_run.outputs.result
    blobs = BlobStore(demo_run.out_dir / "blobs")
    under = render_report(result, blobs, spec=_spec_for(budget_usd=result.spent_usd * 2))
    assert 'id="over-budget"' not in under and 'class="kpi over"' not in under
    # Spending exactly the budget is within it.
    at = render_report(result, blobs, spec=_spec_for(budget_usd=result.spent_usd))
    assert 'id="over-budget"' not in at
    over = render_report(result, blobs, spec=_spec_for(budget_usd=result.spent_usd / 2))
    assert 'id="over-budget"' in over and 'class="kpi over" id="spent"' in over
    assert f"above the budget of ${result.spent_usd / 2:.4f}" in over


def test_charges_above_their_quote_are_flagged(demo_run) -> None:  # type: ignore[no-untyped-def]
    first, second, *rest = demo_run.outputs.result.candidates
    candidates = [
        first.model_copy(update={"quoted_usd": 0.01, "charged_usd": 0.02}),
        second.model_copy(update={"quoted_usd": 0.01, "charged_usd": 0.01}),
        *(c.model_copy(update={"quoted_usd": c.charged_usd}) for c in rest),
    ]
    result = demo_run.outputs.result.model_copy(update={"candidates": candidates})
    html = render_report(result, BlobStore(demo_run.out_dir / "blobs"))
    assert html.count('class="over charge"') == 1
    assert "$0.0200 &gt; quote $0.0100" in html
    assert f"1 of {len(candidates)} candidates were charged above their quote" in html


def test_a_result_without_quotes_flags_no_charge() -> None:
    # results.json written before quotes were recorded: no quote, so nothing to exceed.
    cand = CandidateResult.model_validate(
        {
            "id": 1, "request_id": "r", "wave": 1, "provider": "p", "provider_request_id": "x",
            "passed": True, "delivered": True, "rank": 1, "quality": 1.0, "charged_usd": 0.5,
            "latency_s": 1.0, "blob_sha256": "0" * 64, "image_path": "a.png", "failed": [],
            "dimensions": [],
        }
    )  # fmt: skip
    assert not over_quote(cand)
    assert over_quote(cand.model_copy(update={"quoted_usd": 0.1}))


def test_failed_job_says_why_and_what_was_tried(failed_run) -> None:  # type: ignore[no-untyped-def]
    result = failed_run.outputs.result
    assert result.status == "failed" and result.delivered == 0 and not result.candidates
    html = render_report(
        result, BlobStore(failed_run.out_dir / "blobs"), spec=failed_run.spec, ledger=failed_run.ledger
    )
    assert result.stop_reason in html[html.index('id="outcome"') : html.index('id="why-failed"')]
    why = html[html.index('id="why-failed"') :]
    attempts = len(failed_run.ledger)
    assert (
        f"No image came back: {attempts} attempts at 1 provider (down-host), {attempts} of them failed" in why
    )
    failures = why[why.index('id="failures"') :]
    assert (
        f'<td>down-host</td><td class="text">ProviderUnavailable</td><td>{attempts}</td>'
        '<td class="text">down-host: 503 service unavailable</td>'
    ) in failures
    # Nothing is shown as an empty table: no grids, no rejection table.
    for empty in ('id="rejections"', 'id="delivered"', 'id="spare"', 'id="rejected"'):
        assert empty not in html
    assert "Why candidates were rejected" not in html


def test_failed_job_without_its_ledger_still_counts_failures(failed_run) -> None:  # type: ignore[no-untyped-def]
    result = failed_run.outputs.result
    html = render_report(result, BlobStore(failed_run.out_dir / "blobs"))
    assert f"{result.failed_attempts} attempts failed; their errors are in the job's ledger" in html
    assert 'id="failures"' not in html


def test_job_that_called_no_provider_says_so(failed_run) -> None:  # type: ignore[no-untyped-def]
    result = failed_run.outputs.result.model_copy(
        update={"providers": [], "failed_attempts": 0, "stop_reason": "delivered 0 of 3: budget too small"}
    )
    spec = failed_run.spec.model_copy(update={"budget_usd": 0.001})
    html = render_report(result, BlobStore(failed_run.out_dir / "blobs"), spec=spec, ledger=[])
    assert "delivered 0 of 3: budget too small" in html[: html.index('id="why-failed"')]
    why = html[html.index('id="why-failed"') :]
    assert "No provider was called." in why
    assert "Allowed providers: all; model mock-model; budget $0.0010." in why
    assert 'id="providers"' not in html and 'id="providers-none"' in html
