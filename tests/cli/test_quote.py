"""``imagefunnel quote`` and the ``confidence`` guard of ``imagefunnel run``, on the emulated market."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from imagefunnel.cli import demo
from imagefunnel.cli.quote import QUOTE_FILE
from imagefunnel.cli.runner import STORE_FILE, open_store
from imagefunnel.errors import SpecError
from imagefunnel.forecast import JobQuote
from imagefunnel.market import MarketServer
from imagefunnel.routing.passrates import PassRate, PassRateKey
from imagefunnel.store.pass_rates import SqlPassRates

DEMO_SPEC = Path(__file__).parents[2] / "src" / "imagefunnel" / "spec" / "examples" / "headshot-demo.yaml"
MODEL = "fal-ai/flux/dev"


def imagefunnel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagefunnel", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )


def job(tmp_path: Path, extra: str) -> Path:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: quoted\nuse_case: generic\nprompts: [a lighthouse at dusk]\nmodel: {MODEL}\n"
        "deliver: 12\nmax_candidates: 60\ndeadline_s: 120\n" + extra
    )
    return spec


def test_a_quote_prints_every_figure_and_says_it_starts_from_the_prior(tmp_path: Path) -> None:
    done = imagefunnel("quote", str(job(tmp_path, "budget_usd: 1\n")), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for needle in (
        "quote for quoted: deliver 12 within $1.00 and 120s",
        "pass rates: prior Beta(2,1), no jobs learned yet",
        "P(deliver 12 within budget and deadline): ",
        "spend: expected $",
        "p95 $",
        "candidates: expected ",
        "wall time: expected ",
        "smallest budget for P >= 0.95: $",
        "spot-4090: ",
        "per accepted image",
    ):
        assert needle in out, needle
    assert not (tmp_path / "out").exists()  # a quote creates no store


def test_quote_json_parses_into_the_quote_model_and_uses_learned_pass_rates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = open_store(out)
    try:
        key = PassRateKey("spot-4090", MODEL, "generic")
        SqlPassRates(store.engine).save_pass_rate(PassRate(key, 3.0, 27.0, time.time()))
    finally:
        store.close()
    spec = job(tmp_path, "budget_usd: 0.004\n")
    done = imagefunnel("quote", str(spec), "--out", str(out), "--json", "--confidence", "0.9")
    assert done.returncode == 1, done.stderr  # the budget does not reach 0.9
    quote = JobQuote.model_validate(json.loads(done.stdout))
    assert not quote.cold_start and "learned for spot-4090" in quote.pass_rates
    (box,) = [p for p in quote.providers if p.provider == "spot-4090"]
    assert box.learned and box.pass_rate_mean == pytest.approx(0.1, abs=0.01)
    assert quote.confidence == 0.9 and quote.p_deliver < 0.9
    assert quote.needed_budget_usd is not None and quote.needed_budget_usd > 0.004


@contextmanager
def _kept(market: MarketServer) -> Iterator[MarketServer]:
    yield market


def test_a_budget_too_small_for_the_confidence_is_refused_before_anything_is_bought(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = job(tmp_path, "budget_usd: 0.002\nconfidence: 0.95\n")
    with MarketServer("demo") as market:
        monkeypatch.setattr(demo, "_market", lambda _scenario: _kept(market))
        with pytest.raises(SpecError) as caught:
            demo.run_spec(Console(), spec_path=spec, providers_path=None, scenario="demo", out_dir=tmp_path)
        assert market.billing() == [] and market.gpu_billing() == []  # nothing bought anywhere
    message = str(caught.value)
    assert message.startswith("confidence: budget $0.002 reaches P(deliver 12)=")
    assert "< 0.95; a budget of $" in message and message.endswith(" reaches it")
    assert "\n" not in message
    assert not (tmp_path / STORE_FILE).exists()  # no job was started


def test_run_refuses_in_one_line_with_the_needed_budget(tmp_path: Path) -> None:
    spec = job(tmp_path, "budget_usd: 0.002\nconfidence: 0.95\n")
    done = imagefunnel("run", str(spec), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: confidence: budget $0.002 reaches P(deliver 12)=")
    assert "a budget of $" in line and "Traceback" not in done.stderr


def test_a_run_its_budget_allows_records_its_quote(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: small\nuse_case: generic\nprompts: [a lighthouse]\nmodel: {MODEL}\n"
        "deliver: 2\nbudget_usd: 1\ndeadline_s: 120\nconfidence: 0.9\n"
    )
    out = tmp_path / "out"
    done = imagefunnel("run", str(spec), "--out", str(out))
    assert done.returncode in (0, 1), done.stderr
    quote = JobQuote.model_validate_json((out / QUOTE_FILE).read_text())
    assert quote.deliver == 2 and quote.p_deliver >= 0.9
    assert (out / "results.json").is_file()
