from __future__ import annotations

import json

from imagefunnel.funnel import JobResult
from imagefunnel.report import render_report
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
