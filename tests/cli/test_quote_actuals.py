"""A run is held to its quote: results.json and the report put quoted and actual side by side,
say what went past the quoted p95, and say when the run had to leave the quoted plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from imagefunnel.cli import demo
from imagefunnel.cli.quote import (
    QUOTE_FILE,
    learned_pass_rates,
    load_given_quote,
    market_latencies,
    quote_spec,
)
from imagefunnel.errors import SpecError
from imagefunnel.forecast import JobQuote
from imagefunnel.funnel.result import JobResult
from imagefunnel.market import MarketServer
from imagefunnel.market.scenario import Scenario
from imagefunnel.quote_check import ResultsFile, load_record
from imagefunnel.spec import load_spec

MODEL = "fal-ai/flux/dev"


def _provider(name: str, price: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "fal",
        "models": [MODEL],
        "price_usd_per_mp": price,
        "queue_s": [0.0, 0.01],
        "processing_s": [0.02, 0.05],
        "defect_rate": 0.0,
        **extra,
    }


# The cheap provider is the quoted plan; from 30 s of scenario time on it is down for good.
TWO_PROVIDERS = Scenario.model_validate(
    {
        "name": "two-providers",
        "seed": 11,
        "providers": [
            _provider("cheap", 0.01, outages=[{"start_s": 30, "end_s": 1_000_000}]),
            _provider("dear", 0.03),
        ],
    }
)


def _spec(tmp_path: Path, *, deliver: int = 3) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: held\nuse_case: generic\nprompts: [a lighthouse at dusk]\nmodel: {MODEL}\n"
        f"size: {{width: 256, height: 256}}\ndeliver: {deliver}\nbudget_usd: 1\ndeadline_s: 60\nseed: 3\n"
    )
    return path


@contextmanager
def _kept(market: MarketServer) -> Iterator[MarketServer]:
    yield market


def _results(out: Path) -> ResultsFile:
    return ResultsFile.model_validate_json((out / "results.json").read_text())


def test_a_run_records_its_quote_and_shows_quoted_against_actual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    with MarketServer(TWO_PROVIDERS) as market:
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        result = demo.run_spec(
            Console(width=200), spec_path=_spec(tmp_path), providers_path=None, scenario="x", out_dir=out
        )
    saved = _results(out)
    check = saved.quote
    assert check is not None and check.source == "run"
    # The quote is kept with the job, and the latest run's next to its results.
    record = load_record(out, result.job_id)
    assert record is not None and record.quote == check.quote
    assert JobQuote.model_validate_json((out / QUOTE_FILE).read_text()) == check.quote
    # Actual figures are the job's own; each flag says whether it went past the quoted p95.
    assert check.spend_usd.actual == pytest.approx(result.spent_usd)
    assert check.candidates.actual == result.candidates_generated
    for figure in (check.spend_usd, check.candidates, check.wall_s):
        assert figure.above_p95 == (figure.actual > figure.quoted_p95 + 1e-9)
    assert check.spend_usd.quoted_expected == check.quote.expected_spend_usd
    assert check.quoted_providers[0] == "cheap" and check.used_providers == ["cheap"]
    assert not check.plan_changed and check.delivered_all
    # An older reader of results.json still reads it as a job result.
    assert JobResult.model_validate(json.loads((out / "results.json").read_text())).job_id == result.job_id
    html = (out / "report.html").read_text()
    assert 'id="quote"' in html and "quoted p95" in html and 'id="plan-changed"' not in html


def test_an_outage_between_quote_and_run_makes_the_run_re_plan_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    spec_path = _spec(tmp_path)
    with MarketServer(TWO_PROVIDERS) as market:
        # The quote the user sees: the cheap provider is up and gets the job.
        quote = quote_spec(
            load_spec(spec_path),
            demo.market_providers(market, MODEL),
            pass_rates=learned_pass_rates(out),
            latencies=market_latencies(market),
        )
        (cheap,) = [p for p in quote.providers if p.provider == "cheap"]
        assert cheap.share > 0.5
        saved = tmp_path / "quote.json"
        saved.write_text(quote.model_dump_json())
        market.advance(60)  # the cheap provider goes down before the run
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        console = Console(width=300, record=True)
        result = demo.run_spec(
            console, spec_path=spec_path, providers_path=None, scenario="x", out_dir=out, quote_path=saved
        )
        billed = {record.provider for record in market.billing()}
    assert result.status == "delivered" and billed == {"dear"}
    check = _results(out).quote
    assert check is not None and check.source == "given" and check.quote == quote
    assert check.plan_changed and check.used_providers == ["dear"]
    assert check.requote is not None and [p.provider for p in check.requote.providers] == ["dear"]
    assert check.plan_notes[0].startswith("re-planned at the start: cheap of the quoted plan")
    assert any(
        note.startswith("cheap was quoted ") and note.endswith("got none") for note in check.plan_notes
    )
    # The dearer provider costs more than the quote promised: the run says so.
    assert check.spend_usd.actual > check.spend_usd.quoted_expected
    assert check.spend_usd.above_p95 == any(b.startswith("spend ") for b in check.broken)
    record = load_record(out, result.job_id)
    assert record is not None and record.unavailable == ["cheap"]
    printed = console.export_text()
    assert "PLAN CHANGED: re-planned at the start: cheap" in printed
    html = (out / "report.html").read_text()
    assert 'id="plan-changed"' in html and "re-planned at the start" in html


def test_a_saved_quote_of_another_job_is_refused_before_anything_is_bought(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MarketServer(TWO_PROVIDERS) as market:
        quote = quote_spec(
            load_spec(_spec(tmp_path, deliver=5)),
            demo.market_providers(market, MODEL),
            pass_rates=learned_pass_rates(tmp_path),
        )
        saved = tmp_path / "quote.json"
        saved.write_text(quote.model_dump_json())
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        with pytest.raises(SpecError, match="quotes another job than this spec: deliver 5 != 3"):
            demo.run_spec(
                Console(),
                spec_path=_spec(tmp_path, deliver=3),
                providers_path=None,
                scenario="x",
                out_dir=tmp_path / "out",
                quote_path=saved,
            )
        assert market.billing() == []


def test_no_quote_runs_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    with MarketServer(TWO_PROVIDERS) as market:
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        result = demo.run_spec(
            Console(), spec_path=_spec(tmp_path), providers_path=None, scenario="x", out_dir=out, quote=False
        )
    assert _results(out).quote is None and load_record(out, result.job_id) is None
    assert not (out / QUOTE_FILE).exists()


def test_a_file_that_is_no_quote_is_refused_in_one_line(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "text.json").write_text("nope")
    for name, why in (
        ("empty.json", "deliver: Field required (and 21 more)"),
        ("text.json", "the file: Invalid JSON"),
        ("absent.json", "cannot read the quote (No such file or directory)"),
    ):
        with pytest.raises(SpecError) as caught:
            load_given_quote(tmp_path / name, spec)
        assert why in str(caught.value) and "\n" not in str(caught.value), name


def test_a_given_quote_with_no_quote_at_the_start_is_held_without_a_re_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    spec_path = _spec(tmp_path)
    with MarketServer(TWO_PROVIDERS) as market:
        quote = quote_spec(
            load_spec(spec_path), demo.market_providers(market, MODEL), pass_rates=learned_pass_rates(out)
        )
        saved = tmp_path / "quote.json"
        saved.write_text(quote.model_dump_json())
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        result = demo.run_spec(
            Console(), spec_path=spec_path, providers_path=None, scenario="x", out_dir=out,
            quote_path=saved, quote=False,
        )  # fmt: skip
    record = load_record(out, result.job_id)
    assert record is not None and record.source == "given" and record.quote == quote
    assert record.unavailable == [] and record.requote is None
