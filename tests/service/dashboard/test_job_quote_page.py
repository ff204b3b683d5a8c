"""The live job page's "Quoted vs actual" table, over HTTP: the worker's quote next to what the job
did, a line for each figure above its quoted p95, every text escaped, the CSP kept."""

from __future__ import annotations

import re

import pytest
from service_fixtures import Service, ServiceFactory, spec

from imagefunnel.quote_check import QuoteRecord, check_quote
from imagefunnel.service.dashboard.routes import CSP
from imagefunnel.store.models import JobQuoteRow
from quote_fixtures import job_result
from quote_fixtures import quote as hand_quote

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def signed_in(make_service: ServiceFactory) -> Service:
    service = make_service()
    key = service.a["Authorization"].removeprefix("Bearer ")
    assert service.client.post("/login", data={"key": key}, follow_redirects=False).status_code == 303
    return service


def _quote_section(html: str) -> str:
    found = re.search(r'<section id="quote">(.*?)</section>', html, re.S)
    assert found is not None, "no quote section"
    return found.group(1)


def _row(section: str, figure: str) -> list[str]:
    found = re.search(rf'<tr data-figure="{figure}"[^>]*>(.*?)</tr>', section, re.S)
    assert found is not None, f"no {figure} row"
    return [
        re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd]>(.*?)</t[hd]>", found.group(1))
    ]


def _ended(service: Service, job_id: str) -> None:
    with service.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=service.a) as stream:
        "".join(stream.iter_text())  # the final event comes once the quote was checked


def test_an_ended_job_shows_its_quote_next_to_what_it_did(signed_in: Service) -> None:
    job_id = signed_in.submit(spec(deliver=2, max_candidates=20)).json()["id"]
    _ended(signed_in, job_id)
    page = signed_in.client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    section = _quote_section(page.text)
    stored = signed_in.runtime.quotes.get(job_id)
    assert stored is not None and stored.check is not None
    q, check = stored.record.quote, stored.check
    assert _row(section, "spend_usd") == [
        "spend",
        f"${q.expected_spend_usd:.4f}",
        f"${q.spend_p95_usd:.4f}",
        f"${check.spend_usd.actual:.4f}" + (" above p95" if check.spend_usd.above_p95 else ""),
    ]
    candidates = _row(section, "candidates")
    assert candidates[0] == "candidates" and candidates[3].split()[0] == str(
        len(signed_in.runtime.store.candidates(job_id))
    )
    assert "Quoted plan: quick 100%; used: quick" in section
    assert "<script" not in section  # no inline script


def test_figures_above_the_quoted_p95_are_marked_and_said_in_escaped_words(signed_in: Service) -> None:
    job_id = signed_in.submit(spec(deliver=1)).json()["id"]
    _ended(signed_in, job_id)
    # Held to a quote the job broke: spend and candidates above p95, off the plan on a hostile name.
    record = QuoteRecord(quote=hand_quote(), source="run")
    result = job_result(spent=0.5, candidates=20, delivered=4, attempts={"<script>alert(1)</script>": 20})
    check = check_quote(record, result, wall_s=1.0, wall_note="since its first claim")
    quotes = signed_in.runtime.quotes
    with signed_in.runtime.store.session() as s:  # replace the worker's quote with the hand-made one
        row = s.get(JobQuoteRow, job_id)
        assert row is not None
        row.record_json = record.model_dump_json()
    quotes.set_check(job_id, check)
    section = _quote_section(signed_in.client.get(f"/jobs/{job_id}").text)
    assert '<tr data-figure="spend_usd" class="above">' in section
    assert '<tr data-figure="candidates" class="above">' in section
    assert '<tr data-figure="wall_s">' in section  # 1.0 s is within the quoted p95 of 8 s
    broken = re.findall(r"<p class=\"alarm\" data-broken>(.*?)</p>", section, re.S)
    assert broken == [
        "Above the quote: spend $0.5 is above the quoted p95 of $0.15 (expected $0.1)",
        "Above the quote: 20 candidates is above the quoted p95 of 9 (expected 6.0)",
    ]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; was not in the quoted plan" in section
    assert "<script>alert" not in section and 'id="quote-held"' not in section
