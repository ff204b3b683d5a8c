"""``POST /v1/jobs/quote`` on both databases: a quote from the service's providers and learned pass
rates, read from the same spec as ``POST /v1/jobs``, with nothing bought and no job stored."""

from __future__ import annotations

import time

import yaml
from service_fixtures import MODEL, Service, spec

from imagefunnel.forecast import JobQuote
from imagefunnel.market.server import MarketServer
from imagefunnel.routing.passrates import PassRate, PassRateKey
from imagefunnel.store.pass_rates import SqlPassRates


def test_a_quote_buys_nothing_stores_no_job_and_answers_the_forecast(
    service: Service, market: MarketServer
) -> None:
    billed = len(market.billing())
    response = service.client.post("/v1/jobs/quote", json=spec(deliver=3), headers=service.a)
    assert response.status_code == 200, response.text
    quote = JobQuote.model_validate(response.json())
    assert quote.deliver == 3 and quote.budget_usd == 1.0 and quote.deadline_s == 60
    assert quote.cold_start and "prior Beta(2,1)" in quote.pass_rates
    assert [p.provider for p in quote.providers] == ["quick"]
    assert 0 < quote.expected_spend_usd <= quote.spend_p95_usd and 0 <= quote.p_deliver <= 1
    assert len(market.billing()) == billed  # nothing bought
    jobs = service.client.get("/v1/jobs", headers=service.a).json()
    assert jobs["total"] == 0  # and no job stored


def test_a_quote_reads_yaml_and_its_options_like_the_cli(service: Service) -> None:
    body = yaml.safe_dump(spec(deliver=2))
    response = service.client.post(
        "/v1/jobs/quote?confidence=0.9&simulations=300&seed=5",
        content=body,
        headers={**service.a, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    quote = JobQuote.model_validate(response.json())
    assert quote.confidence == 0.9 and quote.simulations == 300 and quote.seed == 5
    # The same request gives the same quote: the forecast is seeded.
    again = service.client.post(
        "/v1/jobs/quote?confidence=0.9&simulations=300&seed=5",
        content=body,
        headers={**service.a, "Content-Type": "application/yaml"},
    )
    assert again.json() == response.json()


def test_a_quote_starts_from_the_pass_rates_the_service_learned(service: Service) -> None:
    key = PassRateKey("quick", MODEL, "generic")
    SqlPassRates(service.runtime.store.engine).save_pass_rate(PassRate(key, 3.0, 27.0, time.time()))
    response = service.client.post("/v1/jobs/quote", json=spec(deliver=2), headers=service.a)
    assert response.status_code == 200, response.text
    quote = JobQuote.model_validate(response.json())
    (quick,) = quote.providers
    assert not quote.cold_start and "learned from earlier jobs" in quote.pass_rates
    assert quick.learned and abs(quick.pass_rate_mean - 0.1) < 0.01


def test_a_quote_needs_a_key_and_a_valid_spec_and_leaves_the_job_routes_alone(service: Service) -> None:
    assert service.client.post("/v1/jobs/quote", json=spec()).status_code == 401
    bad = service.client.post("/v1/jobs/quote", json=spec(deliver=0), headers=service.a)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_spec"
    out_of_range = service.client.post("/v1/jobs/quote?confidence=1.5", json=spec(), headers=service.a)
    assert out_of_range.status_code == 422
    # /v1/jobs/{job_id} still answers for jobs, and "quote" is no job of anyone's.
    job = service.submit(spec(deliver=1)).json()
    assert service.client.get(f"/v1/jobs/{job['id']}", headers=service.a).status_code == 200
    assert service.client.get("/v1/jobs/quote", headers=service.a).status_code == 404
    assert service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=service.a).status_code in (202, 409)
