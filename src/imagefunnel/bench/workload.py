"""The benchmark workload: jobs arriving over time, each driven like the funnel drives a real job.

Each job wants ``deliver`` accepted images. It sizes waves exactly as
:class:`~imagefunnel.funnel.Funnel` does (Beta(2, 1) prior on its own pass rate, 15 % safety,
candidate cap 4K), runs ``concurrency`` requests at a time, re-checks "are K accepted yet?" before
buying each one, and stops at K, at its deadline, at the cap, or after a wave in which no request got
an image. What buys the images is a :class:`Buyer`: our router, or the LiteLLM baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from imagefunnel.funnel.waves import wave_size
from imagefunnel.providers.base import GenerationRequest

__all__ = ["Bought", "Buyer", "JobStats", "JobTicket", "Workload", "run_workload"]

_PROMPTS = (
    "studio headshot of a person, neutral background, soft light",
    "corporate portrait, looking at the camera, shallow depth of field",
    "LinkedIn profile photo, natural smile, even lighting",
)


@dataclass(frozen=True, slots=True)
class Workload:
    jobs: int = 200
    deliver: int = 60
    interarrival_s: float = 36.0
    concurrency: int = 8
    deadline_s: float = 900.0
    width: int = 1024
    height: int = 1024
    model: str = "fal-ai/flux/dev"
    use_case: str = "headshot"
    cap_factor: int = 4
    prompts: tuple[str, ...] = _PROMPTS
    seed: int = 0

    def request(self, job: int, n: int) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"job{job:04d}-{n:05d}",
            model=self.model,
            prompt=self.prompts[n % len(self.prompts)],
            width=self.width,
            height=self.height,
            # The funnel's formula (spec.seed × 1_000_003 + n, spec.seed as the e2e slice sets it), so
            # a simulated job and the same job over HTTP send the market the very same requests.
            seed=(self.seed * 1_000_003 + job) * 1_000_003 + n,
        )


@dataclass(frozen=True, slots=True)
class JobTicket:
    job_id: str
    wave: int
    deadline: float
    use_case: str


@dataclass(frozen=True, slots=True)
class Bought:
    provider: str
    model: str
    provider_request_id: str


class Buyer(Protocol):
    """Buys one generation (``None``: the request failed for good) and hears the verdicts."""

    async def buy(self, request: GenerationRequest, ticket: JobTicket) -> Bought | None: ...

    def observe(self, bought: Bought, use_case: str, passed: bool) -> None: ...


Judge = Callable[[Bought], bool]


@dataclass(slots=True)
class JobStats:
    index: int
    started: float
    deliver: int
    finished: float = 0.0
    requested: int = 0
    dispatched: int = 0
    failed_requests: int = 0
    generated: int = 0
    accepted: int = 0
    stop: str = ""

    @property
    def duration_s(self) -> float:
        return self.finished - self.started


@dataclass(slots=True)
class _Job:
    stats: JobStats
    deliver: int
    cap: int
    deadline: float
    waves: int = 0

    @property
    def done(self) -> bool:
        return self.stats.accepted >= self.deliver or bool(self.stats.stop)

    def wave_size(self, now: float) -> int:
        s = self.stats
        if now >= self.deadline:
            s.stop = "deadline"
            return 0
        left = self.cap - s.requested
        if left <= 0:
            s.stop = "cap"
            return 0
        # The funnel's own rule (a routing benchmark's jobs ask for no confidence).
        return wave_size(
            needed=self.deliver - s.accepted,
            passed=s.accepted,
            generated=s.generated,
            left=left,
            confidence=None,
            time_left_s=self.deadline - now,
            round_s=None,
        )


async def _run_job(plan: Workload, index: int, buyer: Buyer, judge: Judge) -> JobStats:
    loop = asyncio.get_running_loop()
    now = loop.time()
    job = _Job(
        JobStats(index, now, plan.deliver),
        plan.deliver,
        plan.cap_factor * plan.deliver,
        now + plan.deadline_s,
    )
    gate = asyncio.Semaphore(plan.concurrency)

    async def one(n: int, wave: int) -> None:
        async with gate:
            if job.done or loop.time() >= job.deadline:
                return
            ticket = JobTicket(f"job{index:04d}", wave, job.deadline, plan.use_case)
            job.stats.dispatched += 1
            bought = await buyer.buy(plan.request(index, n), ticket)
        if bought is None:
            job.stats.failed_requests += 1
            return
        passed = judge(bought)
        buyer.observe(bought, plan.use_case, passed)
        job.stats.generated += 1
        job.stats.accepted += passed

    while not job.done:
        size = job.wave_size(loop.time())
        if size == 0:
            break
        job.waves += 1
        first = job.stats.requested
        job.stats.requested += size
        generated_before = job.stats.generated
        await asyncio.gather(*(one(first + i, job.waves) for i in range(size)))
        if job.stats.generated == generated_before and job.stats.failed_requests and not job.done:
            job.stats.stop = "no provider could deliver a whole wave"
    job.stats.finished = loop.time()
    return job.stats


async def run_workload(plan: Workload, buyer: Buyer, judge: Judge) -> list[JobStats]:
    """Start job ``i`` at ``i × interarrival_s`` and run all to completion."""

    async def delayed(index: int) -> JobStats:
        await asyncio.sleep(index * plan.interarrival_s)
        return await _run_job(plan, index, buyer, judge)

    return list(await asyncio.gather(*(delayed(i) for i in range(plan.jobs))))
