"""The end-to-end slice: a few jobs over real HTTP, real rendering, real scoring, the real funnel.

It runs the same scenario on :class:`~imagefunnel.market.server.MarketServer` (scenario time
accelerated by ``time_factor``), with the protocol adapters the demo uses, a real
:class:`~imagefunnel.funnel.Funnel`, :class:`~imagefunnel.scoring.Scorer` and SQLite store, and
compares each policy's numbers with the same slice run by the simulation. The two differ in what the
simulation leaves out on purpose (pixels, scoring, near-duplicate rejection, CPU contention), so they
agree within sampling noise, not to the cent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.routing import RoutingReport
from imagefunnel.bench.simrun import SimSetup, make_policy, run_policy
from imagefunnel.bench.workload import JobStats, Workload
from imagefunnel.cli.demo import market_providers
from imagefunnel.executors import local_executor
from imagefunnel.funnel import Funnel
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Capabilities, Generation, GenerationRequest, Health, Provider, Quote
from imagefunnel.routing import Router
from imagefunnel.scoring import Scorer
from imagefunnel.spec import JobSpec
from imagefunnel.spec.models import ImageSize
from imagefunnel.store import BlobStore, Store

__all__ = ["AliasProvider", "run_e2e_slice"]

E2E_POLICIES = ("single", "cheapest_per_call", "cost_per_accepted")


class AliasProvider:
    """Serves ``alias`` by asking ``inner`` for its own id of the same model (fal-ai/flux/dev,
    black-forest-labs/flux-dev...), so one request can be routed to any of them."""

    def __init__(self, inner: Provider, *, alias: str, model: str) -> None:
        self.name = inner.name
        self._inner = inner
        self._alias = alias
        self._model = model

    def _own(self, request: GenerationRequest) -> GenerationRequest:
        return dataclasses.replace(request, model=self._model)

    async def capabilities(self) -> Capabilities:
        caps = await self._inner.capabilities()
        return dataclasses.replace(caps, models=frozenset({self._alias}))

    async def quote(self, request: GenerationRequest) -> Quote:
        return dataclasses.replace(await self._inner.quote(self._own(request)), model=self._alias)

    async def generate(self, request: GenerationRequest) -> Generation:
        return dataclasses.replace(await self._inner.generate(self._own(request)), model=self._alias)

    async def health(self) -> Health:
        return await self._inner.health()

    async def aclose(self) -> None:
        await self._inner.aclose()


def _spec(workload: Workload, index: int, time_factor: float) -> JobSpec:
    return JobSpec(
        name=f"job{index:04d}",
        prompts=list(workload.prompts),
        model=workload.model,
        size=ImageSize(width=workload.width, height=workload.height),
        deliver=workload.deliver,
        concurrency=workload.concurrency,
        budget_usd=1_000.0,
        deadline_s=workload.deadline_s * time_factor,
        seed=workload.seed * 1_000_003 + index,
    )


async def _http_run(
    name: str, setup: SimSetup, server: MarketServer, folder: Path, tf: float
) -> PolicyResult:
    w = setup.workload
    adapters: list[Provider] = []
    for profile in server.scenario.providers:
        own = profile.models[0]
        adapters += [
            AliasProvider(p, alias=w.model, model=own)
            for p in market_providers(server, own)
            if p.name == profile.name
        ]
    store, blobs = Store(f"sqlite:///{folder / 'jobs.db'}"), BlobStore(folder / "blobs")
    router = Router(adapters, ledger=store, policy=make_policy(name, setup, w.request(0, 0)), seed=setup.seed)
    jobs: list[JobStats] = []
    try:
        with local_executor() as executor:
            funnel = Funnel(router=router, scorer=Scorer(), store=store, blobs=blobs, executor=executor)

            async def one(index: int) -> None:
                await asyncio.sleep(index * w.interarrival_s * tf)
                started = server.now_s()
                outcome = await funnel.run(_spec(w, index, tf))
                rows = store.candidates(outcome.job_id)
                requests = {row.request_id for row in store.ledger(outcome.job_id)}
                stats = JobStats(index, started, w.deliver, finished=server.now_s())
                stats.generated = len(rows)
                stats.accepted = sum(row.passed for row in rows)
                stats.dispatched = len(requests)
                stats.failed_requests = len(requests) - len(rows)
                jobs.append(stats)

            await asyncio.gather(*(one(i) for i in range(w.jobs)))
    finally:
        for adapter in adapters:
            await adapter.aclose()
        store.close()
    billing = server.billing()
    by_provider: dict[str, float] = defaultdict(float)
    for record in billing:
        by_provider[record.provider] += record.usd
    return PolicyResult(
        name=name,
        jobs=tuple(sorted(jobs, key=lambda j: j.index)),
        spend_usd=math.fsum(record.usd for record in billing),
        billed_requests=len(billing),
        spend_by_provider=dict(by_provider),
    )


def run_e2e_slice(
    report: RoutingReport,
    scenario: Scenario,
    *,
    jobs: int,
    deliver: int,
    seed: int = 0,
    policies: Sequence[str] = E2E_POLICIES,
    time_factor: float = 0.05,
) -> RoutingReport:
    """Run ``policies`` on a ``jobs`` × ``deliver`` slice over HTTP and simulated; add both to ``report``."""
    workload = dataclasses.replace(report.workload, jobs=jobs, deliver=deliver, seed=seed)
    setup = SimSetup(
        scenario, workload, report.calibration, single_provider=report.single_provider, seed=seed
    )
    pairs = []
    for name in policies:
        with tempfile.TemporaryDirectory() as tmp, MarketServer(scenario, time_factor=time_factor) as server:
            http = asyncio.run(_http_run(name, setup, server, Path(tmp), time_factor))
        pairs.append((http, run_policy(name, setup)))
    return dataclasses.replace(report, e2e=tuple(pairs))
