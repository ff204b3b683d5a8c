"""At-most-once spend across a crash: the ledger names a request the moment a provider accepts it,
and a resumed job fetches what its crashed process had bought instead of buying it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from imagefunnel.cli.demo import market_providers
from imagefunnel.funnel import Funnel
from imagefunnel.funnel.reattach import name_unnamed
from imagefunnel.funnel.requests import prompt_for, seed_for
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import (
    Capabilities,
    Findable,
    Generation,
    GenerationRequest,
    Health,
    OnSubmitted,
    PriceUnit,
    Provider,
    Quote,
    Reattachable,
    Submitted,
)
from imagefunnel.routing import RouteContext, Router
from imagefunnel.routing.budget import BudgetGuard
from imagefunnel.scoring import Scorer
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store
from imagefunnel.store.models import LedgerRow

MODEL = "fal-ai/flux/dev"
MODELS = {"fal": MODEL, "replicate": "black-forest-labs/flux-schnell", "comfyui": MODEL}
FAST = {"queue_s": [0.0, 0.0], "processing_s": [0.05, 0.1]}
StartMarket = Callable[[Scenario], MarketServer]


class Crash(BaseException):
    """The process dying: nothing below catches it, so nothing is cancelled or settled."""


class QueueProvider:
    """A queue protocol in memory: ``generate`` names the request, then waits until released."""

    name = "queue"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.accepted = asyncio.Event()

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset({"m"}))

    async def quote(self, request: GenerationRequest) -> Quote:
        return Quote(self.name, request.model, 0.01, PriceUnit.PER_IMAGE, 0.01)

    async def generate(
        self, request: GenerationRequest, *, on_submitted: OnSubmitted | None = None
    ) -> Generation:
        accepted = Submitted(request.request_id, self.name, f"q-{request.request_id}")
        if on_submitted is not None:
            on_submitted(accepted)
        self.accepted.set()
        await self.release.wait()
        return await self.reattach(request, accepted.provider_request_id)

    async def reattach(self, request: GenerationRequest, provider_request_id: str) -> Generation:
        return Generation(
            request.request_id, self.name, request.model, b"png", 0.012, 0.0, provider_request_id
        )

    async def health(self) -> Health:
        return Health(ok=True, latency_s=0.0)

    async def aclose(self) -> None:
        return None


def _context(job_id: str) -> RouteContext:
    return RouteContext(job_id=job_id, wave=1, deadline=1e12, budget=BudgetGuard(1.0))


async def test_the_ledger_names_a_request_while_it_is_still_in_flight(store: Store) -> None:
    provider = QueueProvider()
    assert isinstance(provider, Reattachable)
    store.start_job(job_id="job", name="j", spec_json="{}", deliver=1)
    router = Router([provider], ledger=store)
    call = asyncio.create_task(router.generate(GenerationRequest("job-00000", "m", "p"), _context("job")))
    await provider.accepted.wait()
    (row,) = store.ledger("job")
    assert (row.status, row.provider_request_id) == ("dispatched", "q-job-00000")  # before the answer
    provider.release.set()
    await call
    (row,) = store.ledger("job")
    assert (row.status, row.provider_request_id, row.charged_usd) == ("succeeded", "q-job-00000", 0.012)


def _scenario(protocol: str) -> Scenario:
    fal = {"name": "fal", "protocol": "fal", "models": [MODEL], "price_usd_per_mp": 0.02, **FAST}
    providers: list[dict[str, object]] = [fal]
    boxes: list[dict[str, object]] = []
    if protocol == "replicate":
        price = {"unit": "image", "usd": 0.003}
        rep = {"name": "rep", "protocol": "replicate", "models": [MODELS["replicate"]], "pricing": price}
        providers = [rep | FAST]
    if protocol == "comfyui":
        boxes = [{"name": "box", "models": [MODEL], "usd_per_hour": 0.5, "seconds_per_step": 0.01}]
    return Scenario.model_validate(
        {"name": "crash", "seed": 9, "providers": providers, "comfyui_boxes": boxes}
    )


def _spec(protocol: str = "fal") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "crashy",
            "model": MODELS[protocol],
            "prompts": ["a product photo of a mug"],
            "size": {"width": 256, "height": 256},
            "deliver": 2,
            "max_candidates": 10,
            "budget_usd": 1.0,
            "deadline_s": 60,
            "seed": 4,
        }
    )


def _request(spec: JobSpec, job_id: str, n: int) -> GenerationRequest:
    """The job's ``n``-th request, as the funnel makes it."""
    return GenerationRequest(
        request_id=f"{job_id[:12]}-{n:05d}",
        model=spec.model,
        prompt=prompt_for(spec, n),
        width=spec.size.width,
        height=spec.size.height,
        seed=seed_for(spec, n),
    )


async def _crash_after_submitting(store: Store, provider: Provider, request: GenerationRequest) -> None:
    """Dispatch ``request`` as the router does (intent row, then the id at submission) and die."""
    quote = await provider.quote(request)
    store.begin_attempt(
        job_id="crashed-job",
        request_id=request.request_id,
        attempt=1,
        wave=1,
        provider=provider.name,
        model=request.model,
        quoted_usd=quote.usd,
    )

    def die(accepted: Submitted) -> None:
        store.submitted(
            request_id=request.request_id, attempt=1, provider_request_id=accepted.provider_request_id
        )
        raise Crash

    assert isinstance(provider, Reattachable)
    with pytest.raises(Crash):
        await provider.generate(request, on_submitted=die)


@pytest.mark.parametrize("protocol", ["fal", "replicate", "comfyui"])
async def test_resume_fetches_what_the_crash_cut_off_instead_of_buying_it_again(
    protocol: str, market_factory: StartMarket, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(_scenario(protocol))
    spec = _spec(protocol)
    store.start_job(job_id="crashed-job", name=spec.name, spec_json=spec.model_dump_json(), deliver=2)
    providers = [p for p in market_providers(market, spec.model) if protocol != "comfyui" or p.name == "box"]
    (provider,) = providers
    try:
        for n in range(2):
            await _crash_after_submitting(store, provider, _request(spec, "crashed-job", n))
        # A third request was cut off before the provider named it: it cannot be re-attached.
        store.begin_attempt(
            job_id="crashed-job",
            request_id=_request(spec, "crashed-job", 2).request_id,
            attempt=1,
            wave=1,
            provider=provider.name,
            model=spec.model,
            quoted_usd=0.5,
        )
        # Its intent dates from well before the resume: a provider whose listing shows a request
        # only once it has ended (fal) has no reason left to wait for it, and looks once.
        _backdate(store, _request(spec, "crashed-job", 2).request_id, minutes=10)
        named = {r.provider_request_id for r in store.ledger("crashed-job") if r.provider_request_id}
        assert len(named) == 2
        funnel = Funnel(router=Router(providers, ledger=store), scorer=Scorer(), store=store, blobs=blobs)
        outcome = await funnel.resume("crashed-job")
    finally:
        for p in providers:
            await p.aclose()

    ledger = {r.request_id: r for r in store.ledger("crashed-job")}
    candidates = store.candidates("crashed-job")
    billed = {b.request_id: b.usd for b in market.billing()} | {
        g.prompt_id: g.usd for g in market.gpu_billing()
    }
    kept = {c.provider_request_id for c in candidates}
    # Both requests the provider had named were fetched, scored and charged as the provider billed.
    assert named <= kept
    for row in ledger.values():
        if row.provider_request_id in named:
            assert row.status == "succeeded"
            assert row.charged_usd == pytest.approx(billed[str(row.provider_request_id)])
    # The unnamed one is closed as lost, at its quote: the upper bound of what it may have cost.
    lost = ledger[_request(spec, "crashed-job", 2).request_id]
    assert (lost.status, lost.charged_usd, lost.provider_request_id) == ("lost", 0.5, None)
    # Nothing the provider billed was thrown away, and nothing was bought twice.
    assert set(billed) <= kept
    assert len({c.request_id for c in candidates}) == len(candidates)
    bought_after = {r.provider_request_id for r in ledger.values() if r.status == "succeeded"} - named
    assert set(billed) == named | bought_after
    assert outcome.status == "delivered"


async def test_a_provider_this_process_lacks_leaves_the_request_interrupted_at_its_quote(
    market_factory: StartMarket, store: Store, blobs: BlobStore
) -> None:
    market = market_factory(_scenario("fal"))
    spec = _spec()
    store.start_job(job_id="crashed-job", name=spec.name, spec_json=spec.model_dump_json(), deliver=2)
    (provider,) = market_providers(market, MODEL)
    try:
        await _crash_after_submitting(store, provider, _request(spec, "crashed-job", 0))
    finally:
        await provider.aclose()
    other = QueueProvider()  # the resuming process is configured without the provider it used
    funnel = Funnel(router=Router([other], ledger=store), scorer=Scorer(), store=store, blobs=blobs)
    await funnel.resume("crashed-job")
    row = store.ledger("crashed-job")[0]
    assert row.status == "interrupted" and row.provider_request_id
    assert row.charged_usd == row.quoted_usd


@pytest.mark.parametrize("protocol", ["replicate", "fal"])
async def test_a_request_accepted_before_the_crash_named_it_is_found_by_its_input(
    protocol: str, market_factory: StartMarket, store: Store, blobs: BlobStore
) -> None:
    # The crash comes between the provider taking the request (Replicate's prediction, fal's queued
    # request) and the ledger recording its id. fal lists it only once it has ended: the resume
    # below starts while it is still running.
    market = market_factory(_scenario(protocol))
    spec = _spec(protocol)
    store.start_job(job_id="crashed-job", name=spec.name, spec_json=spec.model_dump_json(), deliver=2)
    (provider,) = market_providers(market, spec.model)
    try:
        request = _request(spec, "crashed-job", 0)
        # A request with the same prompt and size but another seed (another job): never taken.
        other = GenerationRequest(
            request_id="other-00000",
            model=spec.model,
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            seed=(request.seed or 0) + 1,
        )
        with pytest.raises(Crash):
            await provider.generate(other, on_submitted=_die)
        quote = await provider.quote(request)
        store.begin_attempt(
            job_id="crashed-job",
            request_id=request.request_id,
            attempt=1,
            wave=1,
            provider=provider.name,
            model=spec.model,
            quoted_usd=quote.usd,
        )
        assert isinstance(provider, Reattachable)
        with pytest.raises(Crash):
            await provider.generate(request, on_submitted=_die)  # accepted, never named
        (unnamed,) = store.ledger("crashed-job")
        assert unnamed.provider_request_id is None
        funnel = Funnel(router=Router([provider], ledger=store), scorer=Scorer(), store=store, blobs=blobs)
        outcome = await funnel.resume("crashed-job")
    finally:
        await provider.aclose()
    ledger = {(r.request_id, r.attempt): r for r in store.ledger("crashed-job")}
    row = ledger[(request.request_id, 1)]
    billed = {b.request_id: b for b in market.billing()}
    assert row.status == "succeeded" and row.provider_request_id in billed
    assert market.truth(str(row.provider_request_id)).seed == request.seed
    assert row.charged_usd == pytest.approx(billed[str(row.provider_request_id)].usd)
    kept = {c.provider_request_id for c in store.candidates("crashed-job")}
    assert row.provider_request_id in kept
    # The other job's request is billed to that job, not to this one's ledger.
    assert len(billed) == len({r.provider_request_id for r in ledger.values() if r.status == "succeeded"}) + 1
    assert outcome.status == "delivered"


def _die(accepted: Submitted) -> None:
    raise Crash


def _backdate(store: Store, request_id: str, *, minutes: float) -> None:
    """Move an attempt's intent into the past, as if the job were resumed that much later."""
    with store.session() as session:
        row = session.scalars(select(LedgerRow).where(LedgerRow.request_id == request_id)).one()
        row.started_at = row.started_at - timedelta(minutes=minutes)


class SlowFinder(QueueProvider):
    """A ``Findable`` provider whose listing takes ``delay_s`` to show what it took (fal's shows a
    request only once it has ended), and which names every request ``found``."""

    def __init__(self, delay_s: float, found: str = "found-1") -> None:
        super().__init__()
        self.delay_s, self.found, self.searches = delay_s, found, 0

    async def find_submitted(
        self, request: GenerationRequest, *, since: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        self.searches += 1
        await asyncio.sleep(self.delay_s)
        return None if self.found in exclude else self.found


async def _name(store: Store, provider: SlowFinder, n: int, timeout_s: float | None) -> tuple[int, float]:
    store.start_job(job_id="job", name="j", spec_json="{}", deliver=1)
    requests = {f"job-{i:05d}": GenerationRequest(f"job-{i:05d}", "m", "p", seed=i) for i in range(n)}
    for request_id in requests:
        store.begin_attempt(
            job_id="job",
            request_id=request_id,
            attempt=1,
            wave=1,
            provider="queue",
            model="m",
            quoted_usd=0.1,
        )
    started = time.monotonic()
    named = await name_unnamed(
        store.in_flight("job"),
        store=store,
        job_id="job",
        provider_for=lambda name: provider,
        request_for=requests.get,
        done_requests=frozenset(),
        timeout_s=timeout_s,
    )
    return named, time.monotonic() - started


async def test_unnamed_attempts_are_looked_for_at_once_and_an_id_goes_to_one_of_them(store: Store) -> None:
    provider = SlowFinder(delay_s=0.4)
    assert isinstance(provider, Findable)
    named, took = await _name(store, provider, 3, timeout_s=None)
    assert provider.searches == 3 and took < 1.0  # one wait, not three in a row
    # Each search excluded only what the ledger held before: the id goes to the first attempt.
    assert named == 1
    assert [r.provider_request_id for r in store.ledger("job")] == ["found-1", None, None]


async def test_the_search_is_bounded_by_the_time_the_job_has_left(store: Store) -> None:
    named, took = await _name(store, SlowFinder(delay_s=5.0), 2, timeout_s=0.2)
    assert named == 0 and took < 1.0
    assert all(r.provider_request_id is None for r in store.ledger("job"))
