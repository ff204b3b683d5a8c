"""A worker quotes a queued job before buying anything and keeps the quote with it, on both databases:
the first claim's quote stays on a re-claim, a confidence the budget cannot reach fails the job
having bought nothing, and the ended job is held to its quote."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from imagefunnel.cli.demo import market_providers
from imagefunnel.forecast import usd
from imagefunnel.market.server import MarketServer
from imagefunnel.quote_check import QuoteRecord
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.job_quotes import JobQuotes
from imagefunnel.store.models import utcnow
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers import JobEnd, JobWorker, WorkerSettings
from quote_fixtures import quote as hand_quote


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _spec(**extra: Any) -> JobSpec:
    values: dict[str, Any] = {
        "prompts": ["a headshot"],
        "use_case": "generic",
        "deliver": 2,
        "budget_usd": 2.0,
        "deadline_s": 60,
        "seed": 3,
    }
    return JobSpec.model_validate(values | extra)


def _enqueue(store: Store, job_id: str, spec: JobSpec) -> None:
    JobQueue(store).enqueue(
        job_id=job_id, name=spec.name, spec_json=spec.model_dump_json(), deliver=spec.deliver
    )


def _worker(
    store: Store, market: MarketServer, tmp_path: Path, ends: list[JobEnd] | None = None, **settings: Any
) -> JobWorker:
    async def heard(end: JobEnd) -> None:
        if ends is not None:
            ends.append(end)

    return JobWorker(
        store=store,
        blobs=BlobStore(tmp_path / "blobs"),
        providers=lambda spec: market_providers(market, spec.model),
        settings=WorkerSettings(worker_id="w1", **settings),
        on_end=heard,
    )


async def test_a_claimed_job_is_quoted_before_it_buys_and_held_to_the_quote_when_it_ends(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    _enqueue(store, "job-q", _spec())
    ends: list[JobEnd] = []
    outcome = await _worker(store, market, tmp_path, ends).run_one()
    assert outcome is not None and outcome.status == "delivered"
    stored = JobQuotes(store).get("job-q")
    assert stored is not None
    quote = stored.record.quote
    assert (quote.deliver, quote.budget_usd, quote.deadline_s) == (2, 2.0, 60)
    assert [p.provider for p in quote.providers] == ["clean"] and quote.cold_start
    assert stored.record.source == "run" and not stored.record.unavailable
    # Quoted before anything was bought: the quote is older than the job's first ledger entry.
    ledger = store.ledger("job-q")
    assert ledger and stored.quoted_at <= min(e.started_at for e in ledger)
    check = stored.check
    assert check is not None and ends[-1].quote == check
    assert check.candidates.actual == len(store.candidates("job-q"))
    assert check.spend_usd.actual == pytest.approx(store.spent_usd("job-q"))
    assert check.delivered_all and check.used_providers == ["clean"] and not check.plan_changed
    assert check.wall_note == "since its first claim" and check.wall_s.actual > 0


async def test_a_confidence_the_budget_cannot_reach_fails_the_job_before_anything_is_bought(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    billed = len(market.billing())
    _enqueue(store, "job-c", _spec(deliver=5, budget_usd=0.01, confidence=0.9))
    ends: list[JobEnd] = []
    # Quoting switched off for the worker: a spec with a confidence is quoted all the same.
    assert await _worker(store, market, tmp_path, ends, quote=False).run_one() is None
    job = store.job("job-c")
    assert job.status == "failed" and job.lease_owner is None
    reason = job.stop_reason or ""
    assert store.ledger("job-c") == [] and len(market.billing()) == billed  # nothing bought
    assert (ends[-1].status, ends[-1].quote) == ("failed", None)
    stored = JobQuotes(store).get("job-c")  # the quote that refused it is kept with it
    assert stored is not None and stored.check is None
    needed = stored.record.quote.needed_budget_usd
    assert needed is not None and needed > 0.01
    assert reason.startswith("confidence: budget $0.01 reaches P(deliver 5)=")
    assert reason.endswith(f"; a budget of {usd(needed)} reaches it")  # the budget it needs


async def test_a_re_claimed_job_keeps_its_first_quote(
    store: Store, market: MarketServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_second_quote(*args: object, **kwargs: object) -> None:
        raise AssertionError("a re-claimed job was quoted again")

    monkeypatch.setattr("imagefunnel.workers.loop.quote_job", no_second_quote)
    _enqueue(store, "job-r", _spec())
    first = JobQueue(store).claim("dead-worker", lease_s=1, now=utcnow() - timedelta(minutes=5))
    assert first is not None  # its holder quoted it, then died before buying
    given = hand_quote(deliver=2, budget_usd=2.0, deadline_s=60.0, simulations=77, seed=41)
    JobQuotes(store).keep("job-r", QuoteRecord(quote=given, source="run"))
    outcome = await _worker(store, market, tmp_path).run_one()
    assert outcome is not None and outcome.status == "delivered" and store.job("job-r").claims == 2
    stored = JobQuotes(store).get("job-r")
    assert stored is not None and stored.record.quote == given  # not quoted again
    assert stored.check is not None and stored.check.quote == given
    assert stored.check.wall_note == "since its first claim, time between claims included"
    # The hand-made quote's plan (providers a and b) is not what ran: the check says so.
    assert stored.check.plan_changed and stored.check.used_providers == ["clean"]


async def test_a_worker_with_quoting_off_runs_a_job_without_a_confidence_unquoted(
    store: Store, market: MarketServer, tmp_path: Path
) -> None:
    _enqueue(store, "job-n", _spec(deliver=1))
    ends: list[JobEnd] = []
    outcome = await _worker(store, market, tmp_path, ends, quote=False).run_one()
    assert outcome is not None and outcome.status == "delivered"
    assert JobQuotes(store).get("job-n") is None and ends[-1].quote is None


async def test_a_reader_never_sees_the_job_ended_without_its_quote_check(
    store: Store, market: MarketServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What GET /v1/jobs/{id} would read the moment the job's final status is committed.
    seen: list[tuple[str, bool]] = []
    finish = Store.finish_job

    def finish_and_look(self: Store, job_id: str, **kwargs: Any) -> None:
        finish(self, job_id, **kwargs)
        stored = JobQuotes(self).get(job_id)
        seen.append((self.job(job_id).status, stored is not None and stored.check is not None))

    monkeypatch.setattr(Store, "finish_job", finish_and_look)
    _enqueue(store, "job-a", _spec())
    ends: list[JobEnd] = []
    outcome = await _worker(store, market, tmp_path, ends).run_one()
    assert outcome is not None and outcome.status == "delivered"
    assert seen == [("delivered", True)]
    stored = JobQuotes(store).get("job-a")
    assert stored is not None and stored.check is not None and ends[-1].quote == stored.check
    assert stored.check.candidates.actual == len(store.candidates("job-a"))
    assert stored.check.delivered_all and stored.check.wall_s.actual > 0


async def test_a_quote_check_that_cannot_be_made_as_the_job_ends_does_not_stop_it_ending(
    store: Store, market: MarketServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagefunnel.errors import StoreError
    from imagefunnel.workers import loop

    calls = []
    real = loop.load_result

    def first_fails(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise StoreError("store operation failed: database is locked")
        return real(*args)

    monkeypatch.setattr(loop, "load_result", first_fails)
    _enqueue(store, "job-f", _spec())
    outcome = await _worker(store, market, tmp_path).run_one()
    assert outcome is not None and outcome.status == "delivered" == store.job("job-f").status
    stored = JobQuotes(store).get("job-f")
    assert len(calls) == 2 and stored is not None and stored.check is not None  # made after it ended
