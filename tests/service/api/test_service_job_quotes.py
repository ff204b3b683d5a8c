"""Jobs submitted to the service are quoted by the worker that claims them, on both databases:
``GET /v1/jobs/{id}`` carries the quote and, once the job ended, quoted vs actual; so does the job's
final event (and its webhook); a ``confidence`` the budget cannot reach fails the job unbought."""

from __future__ import annotations

import json
from typing import Any

from service_fixtures import Service, ServiceFactory, spec

from imagefunnel.forecast import JobQuote, usd
from imagefunnel.market.server import MarketServer
from imagefunnel.quote_check import QuoteCheck
from imagefunnel.service.events import TERMINAL_EVENTS


def _final_event(service: Service, job_id: str) -> tuple[str, dict[str, Any]]:
    """Follow the job's events to its final one (recorded once its quote was checked)."""
    with service.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=service.a) as stream:
        text = "".join(stream.iter_text())
    for block in reversed(text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") in TERMINAL_EVENTS:
            return fields["event"], json.loads(fields["data"])
    raise AssertionError(f"job {job_id} has no final event")


def test_a_submitted_job_is_quoted_and_read_back_with_quoted_vs_actual(service: Service) -> None:
    submitted = service.submit(spec(deliver=2, max_candidates=20)).json()
    assert submitted["status"] == "queued" and submitted["quote"] is None  # quoted when claimed
    kind, data = _final_event(service, submitted["id"])
    job = service.client.get(f"/v1/jobs/{submitted['id']}", headers=service.a).json()
    assert kind == job["status"] == "delivered"
    quote = JobQuote.model_validate(job["quote"]["quote"])
    assert (quote.deliver, quote.budget_usd, quote.candidate_cap) == (2, 1.0, 20)
    assert [p.provider for p in quote.providers] == ["quick"] and job["quote"]["unavailable"] == []
    check = QuoteCheck.model_validate(job["quote"]["check"])
    candidates = service.client.get(f"/v1/jobs/{job['id']}/candidates", headers=service.a).json()
    assert check.candidates.actual == candidates["total"]
    assert abs(check.spend_usd.actual - job["spent_usd"]) < 1e-6 and check.delivered_all
    assert check.quote == quote and check.used_providers == ["quick"]
    # The final event (and the job.delivered webhook) carries quoted vs actual, without the quote.
    assert data["quote"]["candidates"] == check.candidates.model_dump()
    assert data["quote"]["broken"] == check.broken and "quote" not in data["quote"]
    listed = service.client.get("/v1/jobs", headers=service.a).json()["items"]
    assert [item["quote"] for item in listed] == [job["quote"]]


def test_a_confidence_the_budget_cannot_reach_fails_the_job_with_the_budget_it_needs(
    service: Service, market: MarketServer
) -> None:
    billed = len(market.billing())
    submitted = service.submit(spec(deliver=5, budget_usd=0.01, confidence=0.9)).json()
    kind, data = _final_event(service, submitted["id"])
    job = service.client.get(f"/v1/jobs/{submitted['id']}", headers=service.a).json()
    assert kind == job["status"] == "failed" and "quote" not in data
    needed = job["quote"]["quote"]["needed_budget_usd"]
    assert needed > 0.01 and job["quote"]["check"] is None
    assert job["stop_reason"].startswith("confidence: budget $0.01 reaches P(deliver 5)=")
    assert f"a budget of {usd(needed)} reaches it" in job["stop_reason"]
    assert service.client.get(f"/v1/jobs/{job['id']}/ledger", headers=service.a).json() == []
    assert len(market.billing()) == billed


def test_a_service_with_quoting_off_runs_jobs_unquoted(make_service: ServiceFactory) -> None:
    service = make_service(quote_jobs=False)
    submitted = service.submit(spec(deliver=1)).json()
    kind, data = _final_event(service, submitted["id"])
    job = service.client.get(f"/v1/jobs/{submitted['id']}", headers=service.a).json()
    assert kind == "delivered" and job["quote"] is None and "quote" not in data
