"""The protocol-neutral core of the emulated market: time, jobs, faults, billing and truth.

Wire protocols (``fal_app``, ``replicate_app``, ``openai_app``) translate HTTP into calls on ``Market``.
Nothing runs in the background: a job's phase is a pure function of the scenario clock, so the
market needs no timers, is cheap to start and stop, and can be fast-forwarded with ``advance``.

A provider with ``slots`` (a self-hosted box behind a hosted protocol) runs that many requests at
once; a request beyond them waits, first in first out, before its own ``queue_s`` starts, and is
``QUEUED`` meanwhile (fal's ``IN_QUEUE`` with its ``queue_position``, Replicate's ``starting``; the
synchronous protocols answer later). Its slot time is fixed at submission from the requests ahead
(finished, cancelled and deadline-expired ones free their slot when they end); a request cancelled
while waiting leaves its place empty rather than moving the ones behind it forward.

Randomness has two levels, both derived from the scenario seed:

* per *request content* (provider, model, prompt, size, seed, and the subject its reference photos
  show): the picture and its defect, so the same request always yields the same image, as a seeded
  diffusion model would;
* per *attempt* (the n-th time this provider saw that content): latency and injected faults, so a
  retry of a request that hit a 5xx gets a fresh draw instead of failing forever. Timed fault
  windows (``market.faults``) draw from a stream of their own, so adding a window to a scenario
  leaves every other draw of its requests as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from imagefunnel.market.billing import BillingRecord, bill
from imagefunnel.market.defects import Defect
from imagefunnel.market.faults import (
    ColdStartFault,
    ConnectionResetFault,
    FaultHits,
    GarbageFault,
    RateLimitFault,
    draw_faults,
)
from imagefunnel.market.images import AssetLibrary, Truth, plan_image, plan_product_image, render
from imagefunnel.market.products import ProductAsk, product_ask, reference_color
from imagefunnel.market.records import (
    ImageInput,
    Job,
    Phase,
    ProviderStats,
    Rejection,
    derive_rng,
    job_id,
)
from imagefunnel.market.scenario import ProviderProfile, Scenario

__all__ = [
    "BillingRecord",
    "ImageInput",
    "Job",
    "Market",
    "Phase",
    "ProviderStats",
    "Rejection",
    "derive_rng",
]

_RENDER_CACHE_SIZE = 64
_SUBJECT_CACHE_SIZE = 256
_SERVER_ERRORS = (500, 502, 503, 504)


class _ProviderState:
    """Mutable per-provider bookkeeping; only touched under ``Market._lock``."""

    def __init__(self, profile: ProviderProfile) -> None:
        self.profile = profile
        self.jobs: dict[str, Job] = {}
        self.cancelled_at: dict[str, float] = {}
        self.attempts: Counter[tuple[object, ...]] = Counter()
        self.submissions = 0
        self.rejections: Counter[str] = Counter()
        self.tokens = max(1.0, profile.rate_limit_per_s or 1.0)
        self.tokens_at = 0.0
        # Scenario time until which the last 429 asked clients to stay away (its Retry-After).
        self.retry_until = 0.0
        # Cold starts: the provider is warm until ``warm_until`` (its last job's end + idle_s), and
        # a boot under way ends at ``boot_until``. ``None``: it has not worked yet (cold).
        self.warm_until: float | None = None
        self.boot_until = 0.0
        # A provider with slots: the jobs that may still hold (or wait for) one, in submission order.
        self.occupying: list[Job] = []


class Market:
    """All emulated providers of one scenario. Thread-safe: the server's event loop, its render
    threads and the test thread that reads ``billing()``/``truth()`` share it."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        time_factor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        library: AssetLibrary | None = None,
    ) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0")
        self.scenario = scenario
        self.time_factor = time_factor
        self._clock = clock
        self._t0 = clock()
        self._offset_s = 0.0
        self._library = library or AssetLibrary()
        self._lock = threading.Lock()
        self._providers = {p.name: _ProviderState(p) for p in scenario.providers}
        self._rendered: OrderedDict[str, bytes] = OrderedDict()
        self._subjects: OrderedDict[str, str | None] = OrderedDict()
        self._product_colors: OrderedDict[str, tuple[int, int, int] | None] = OrderedDict()

    # -- time -------------------------------------------------------------------------------
    def now_s(self) -> float:
        """Scenario time: wall seconds since start divided by ``time_factor``, plus ``advance``s."""
        return (self._clock() - self._t0) / self.time_factor + self._offset_s

    def reset_clock(self) -> None:
        """Make scenario time 0 now (the server calls it when it starts listening)."""
        with self._lock:
            self._t0 = self._clock()
            self._offset_s = 0.0

    def advance(self, seconds: float) -> None:
        """Jump the scenario clock forward (outages, price changes and jobs all move with it)."""
        with self._lock:
            self._offset_s += seconds

    def profile(self, provider: str) -> ProviderProfile | None:
        state = self._providers.get(provider)
        return state.profile if state else None

    def unit_price(self, provider: str) -> float:
        return self._providers[provider].profile.price_at(self.now_s())

    def job(self, provider: str, job_id: str) -> Job | None:
        with self._lock:
            return self._providers[provider].jobs.get(job_id)

    def jobs(self, provider: str) -> list[Job]:
        """Every job ``provider`` took, newest first (a list endpoint's order)."""
        with self._lock:
            taken = list(self._providers[provider].jobs.values())
        return sorted(reversed(taken), key=lambda job: job.submitted_s, reverse=True)

    def truth(self, job_id: str) -> Truth:
        """The side channel: what a request really produced. Raises ``KeyError`` if unknown."""
        with self._lock:
            for state in self._providers.values():
                if job_id in state.jobs:
                    return state.jobs[job_id].truth
        raise KeyError(job_id)

    def outage(self, provider: str) -> Rejection | None:
        """A 503 if the provider is inside an outage window now (counted), else ``None``."""
        state = self._providers[provider]
        if not state.profile.outage_at(self.now_s()):
            return None
        with self._lock:
            state.rejections["outage"] += 1
        return Rejection(503, "Service temporarily unavailable")

    def submit(
        self, provider: str, model: str, inp: ImageInput, *, deadline_s: float | None = None
    ) -> Job | Rejection:
        """Admit a request (rate limit, injected 5xx) and fix its whole timeline and outcome;
        ``deadline_s`` (scenario seconds from now) cancels it if it has not finished by then."""
        state = self._providers[provider]
        profile = state.profile
        now = self.now_s()
        subject = self.subject(inp.references) if inp.references else None
        with self._lock:
            if now < state.retry_until:
                # A client that honours Retry-After never sends this: the benchmark counts it.
                state.rejections["before_retry_after"] += 1
            limited = self._take_token(state, now)
            if limited is not None:
                state.rejections["rate_limited"] += 1
                return limited
            content: tuple[object, ...] = (
                model,
                inp.prompt,
                inp.width,
                inp.height,
                inp.seed,
                inp.image_format,
            )
            if subject is not None:  # only then: requests without one draw what they always drew
                content += (subject,)
            attempt = state.attempts[content]
            state.attempts[content] += 1
            n = state.submissions
            state.submissions += 1
        hits = FaultHits()
        if profile.faults:
            fault_rng = derive_rng("fault", self.scenario.seed, provider, *content, attempt)
            hits = draw_faults(profile.faults, now, fault_rng)
            refused = self._refuse(state, hits, now, fault_rng)
            if refused is not None:
                return refused
        rng = derive_rng("attempt", self.scenario.seed, provider, *content, attempt)
        if rng.random() < profile.error_5xx_rate:
            with self._lock:
                state.rejections["5xx"] += 1
            return Rejection(int(rng.choice(_SERVER_ERRORS)), "Internal server error")
        seed = inp.seed if inp.seed is not None else int(rng.integers(0, 2**31))
        queue_s = float(rng.uniform(*profile.queue_s))
        processing_s = float(rng.uniform(*profile.processing_s))
        fails = bool(rng.random() < profile.failure_rate)
        truth = self._plan(profile, model, inp, seed, rng, subject, hits.garbage)
        if hits.preemption is not None:  # drawn after everything else: no other draw moves
            processing_s *= float(rng.uniform(*hits.preemption.at_fraction))
            fails = True
        with self._lock:
            slot_wait_s = self._slot_wait(state, now)
            queue_s += slot_wait_s  # the provider's own queue delay starts once a slot is free
            cold_s = self._cold_start(state, now + slot_wait_s)
            if profile.protocol == "replicate":  # "starting": outside predict_time, never billed
                queue_s += cold_s
            else:  # the boot runs as part of the job (billed where the unit is GPU time)
                processing_s += cold_s
            job = Job(
                id=job_id(self.scenario.seed, provider, n),
                provider=provider,
                model=model,
                input=dataclasses.replace(inp, seed=seed, references=()),  # the subject is in the truth
                submitted_s=now,
                queue_s=queue_s,
                processing_s=processing_s,
                unit_price_usd=profile.price_at(now),
                fails=fails,
                truth=truth,
                deadline_s=None if deadline_s is None else now + deadline_s,
                reset=hits.reset is not None,
                preempted=hits.preemption is not None,
                cold_start_s=cold_s,
                slot_wait_s=slot_wait_s,
            )
            state.jobs[job.id] = job
            if profile.slots is not None:
                state.occupying.append(job)
            if cold_s > 0:
                state.rejections["cold_starts"] += 1
            if hits.reset is not None:
                state.rejections["reset"] += 1
            if hits.preemption is not None:
                state.rejections["preempted"] += 1
            idle_s = max((f.idle_s for f in profile.faults if isinstance(f, ColdStartFault)), default=0.0)
            state.warm_until = max(state.warm_until or 0.0, job.done_s + idle_s)
        return job

    def _slot_wait(self, state: _ProviderState, now: float) -> float:
        """Scenario seconds a request submitted at ``now`` waits for a free slot (under the lock):
        0 for a provider without ``slots``. First in, first out: no earlier than the last request
        ahead got its slot, and then until fewer than ``slots`` of those ahead still run."""
        slots = state.profile.slots
        if slots is None:
            return 0.0
        held: list[tuple[float, float]] = []  # (slot taken, slot freed) of each request ahead
        for job in state.occupying:
            taken = job.submitted_s + job.slot_wait_s
            freed = self._slot_freed(state, job)
            if freed > now and freed > taken:  # still running or waiting, and not cancelled unserved
                held.append((taken, freed))
        state.occupying = [job for job in state.occupying if self._slot_freed(state, job) > now]
        start = max([now, *(taken for taken, _ in held)])
        ends = sorted(freed for _, freed in held if freed > start)
        if len(ends) < slots:
            return start - now
        return ends[len(ends) - slots] - now

    @staticmethod
    def _slot_freed(state: _ProviderState, job: Job) -> float:
        """When ``job`` gives its slot back, as known now: done, or cancelled (by a client or by its
        deadline) before that."""
        end = job.done_s
        if job.deadline_s is not None:
            end = min(end, job.deadline_s)
        cancelled = state.cancelled_at.get(job.id)
        return end if cancelled is None else min(end, cancelled)

    def _cold_start(self, state: _ProviderState, now: float) -> float:
        """Scenario seconds a request submitted at ``now`` waits for the provider to boot (under the
        lock): a boot under way is shared; a provider idle past ``warm_until`` boots anew."""
        if now < state.boot_until:
            return state.boot_until - now
        fault = next(
            (f for f in state.profile.faults if isinstance(f, ColdStartFault) and f.covers(now)), None
        )
        if fault is None or (state.warm_until is not None and now < state.warm_until):
            return 0.0
        rng = derive_rng("cold", self.scenario.seed, state.profile.name, state.submissions)
        if rng.random() >= fault.fraction:
            return 0.0
        extra = float(rng.uniform(*fault.extra_s))
        state.boot_until = now + extra
        return extra

    def _refuse(
        self, state: _ProviderState, hits: FaultHits, now: float, rng: np.random.Generator
    ) -> Rejection | None:
        """The 429 or 5xx a fault window answers this request with, if one hit it."""
        fault = hits.refusal
        if fault is None:
            return None
        with self._lock:
            if isinstance(fault, RateLimitFault):
                retry_s = float(rng.uniform(*fault.retry_after_s))
                state.retry_until = max(state.retry_until, now + retry_s)
                state.rejections["rate_limited"] += 1
                return Rejection(429, "Rate limit exceeded", retry_after_s=retry_s * self.time_factor)
            if isinstance(fault, ConnectionResetFault):
                state.rejections["reset"] += 1
                return Rejection(0, "Connection reset by peer", reset=True)
            state.rejections["5xx"] += 1
        return Rejection(int(rng.choice(_SERVER_ERRORS)), "Internal server error")

    def _take_token(self, state: _ProviderState, now: float) -> Rejection | None:
        rate = state.profile.rate_limit_per_s
        if rate is None:
            return None
        capacity = max(1.0, rate)
        state.tokens = min(capacity, state.tokens + (now - state.tokens_at) * rate)
        state.tokens_at = now
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            return None
        wait_wall_s = (1.0 - state.tokens) / rate * self.time_factor
        state.retry_until = max(state.retry_until, now + wait_wall_s / self.time_factor)
        return Rejection(429, "Rate limit exceeded", retry_after_s=wait_wall_s)

    def subject(self, references: tuple[bytes, ...]) -> str | None:
        """The person ``references`` show (see ``market.subjects``), remembered per set of photos."""
        key = hashlib.blake2b(b"".join(hashlib.sha256(r).digest() for r in references)).hexdigest()
        with self._lock:
            if key in self._subjects:
                return self._subjects[key]
        found = self._library.subject(references)
        with self._lock:
            self._subjects[key] = found
            while len(self._subjects) > _SUBJECT_CACHE_SIZE:
                self._subjects.popitem(last=False)
        return found

    def product_color(self, references: tuple[bytes, ...]) -> tuple[int, int, int] | None:
        """The product's colour in the first of ``references`` (see ``market.products``), remembered."""
        key = hashlib.blake2b(b"".join(hashlib.sha256(r).digest() for r in references)).hexdigest()
        with self._lock:
            if key in self._product_colors:
                return self._product_colors[key]
        found = reference_color(references)
        with self._lock:
            self._product_colors[key] = found
            while len(self._product_colors) > _SUBJECT_CACHE_SIZE:
                self._product_colors.popitem(last=False)
        return found

    def _product(self, inp: ImageInput, subject: str | None) -> ProductAsk | None:
        """The product shot ``inp`` asks for: its prompt names one (and no known person is in its
        photos); a photo sent with it gives the product's colour, as to an image-conditioned model."""
        ask = product_ask(inp.prompt) if subject is None else None
        if ask is None or not inp.references:
            return ask
        color = self.product_color(inp.references)
        return ask if color is None else dataclasses.replace(ask, color=color)

    def _plan(
        self,
        profile: ProviderProfile,
        model: str,
        inp: ImageInput,
        seed: int,
        rng: np.random.Generator,
        subject: str | None,
        garbage: GarbageFault | None = None,
    ) -> Truth:
        parts = (profile.name, model, inp.prompt, inp.width, inp.height, seed)
        ask = self._product(inp, subject)
        if ask is not None:
            truth = plan_product_image(
                provider=profile.name,
                ask=ask,
                width=inp.width,
                height=inp.height,
                seed=seed,
                image_format=inp.image_format,
                defect_rate=profile.defect_rate,
                defect_mix=profile.product_defect_mix,
                rng=derive_rng("product", self.scenario.seed, *parts, *ask.color),
            )
            return self._garbage(truth, profile, rng, garbage)
        content_rng = derive_rng(
            "image", self.scenario.seed, *parts, *(() if subject is None else (subject,))
        )
        truth = plan_image(
            provider=profile.name,
            library=self._library,
            width=inp.width,
            height=inp.height,
            seed=seed,
            image_format=inp.image_format,
            defect_rate=profile.defect_rate,
            defect_mix=profile.defect_mix,
            rng=content_rng,
            subject=subject,
            identity_drift_rate=profile.identity_drift_rate,
        )
        return self._garbage(truth, profile, rng, garbage)

    @staticmethod
    def _garbage(
        truth: Truth, profile: ProviderProfile, rng: np.random.Generator, garbage: GarbageFault | None
    ) -> Truth:
        """``truth``, or black or truncated bytes in its place if a fault or the steady rate says so."""
        kind: Defect | None = None
        if garbage is not None:  # a fault window chose the kind; the steady rate picks either
            kind = Defect.BLACK if garbage.garbage == "black" else Defect.TRUNCATED
        elif rng.random() < profile.garbage_rate:
            kind = Defect.BLACK if rng.random() < 0.5 else Defect.TRUNCATED
        if kind is not None:
            return dataclasses.replace(
                truth, defect=kind, strength=float(rng.uniform(0.5, 1.0)), garbage=True
            )
        return truth

    # -- lifecycle --------------------------------------------------------------------------
    def phase(self, job: Job, now_s: float | None = None) -> Phase:
        now = self.now_s() if now_s is None else now_s
        if self.cancelled_at(job, now) is not None:
            return Phase.CANCELLED
        if now < job.started_s:
            return Phase.QUEUED
        if now < job.done_s:
            return Phase.RUNNING
        return Phase.FAILED if job.fails else Phase.DONE

    def queue_position(self, job: Job) -> int:
        """How many jobs of the same provider, submitted earlier, are still waiting (0-indexed)."""
        now = self.now_s()
        with self._lock:
            jobs = self._providers[job.provider].jobs
            ids = list(jobs)  # dicts keep submission order
            ahead = [jobs[i] for i in ids[: ids.index(job.id)]] if job.id in jobs else []
        return sum(1 for other in ahead if self.phase(other, now) is Phase.QUEUED)

    def cancel(self, job: Job, *, running: bool = False) -> bool:
        """Cancel a job still queued (or, with ``running``, not yet done); ``False`` if too late."""
        now = self.now_s()
        phase = self.phase(job, now)
        if phase is not Phase.QUEUED and not (running and phase is Phase.RUNNING):
            return False
        with self._lock:
            self._providers[job.provider].cancelled_at[job.id] = now
        return True

    def cancelled_at(self, job: Job, now_s: float | None = None) -> float | None:
        """When ``job`` was cancelled, by a client or by its deadline; ``None`` if it was not."""
        now = self.now_s() if now_s is None else now_s
        with self._lock:
            by_client = self._providers[job.provider].cancelled_at.get(job.id)
        deadline = job.deadline_s
        if deadline is not None and deadline < job.done_s and deadline <= now:
            return deadline if by_client is None else min(by_client, deadline)
        return by_client

    def image_bytes(self, job: Job) -> bytes:
        """The encoded output (CPU-bound: call it from a worker thread)."""
        with self._lock:
            cached = self._rendered.get(job.id)
            if cached is not None:
                self._rendered.move_to_end(job.id)
                return cached
        data = render(job.truth, self._library)
        with self._lock:
            self._rendered[job.id] = data
            while len(self._rendered) > _RENDER_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return data

    # -- accounting -------------------------------------------------------------------------
    def billing(self) -> list[BillingRecord]:
        """Every charge so far, in completion order (see ``market.billing`` for each unit). Failed
        and 5xx requests are free (the GPU time a failed job used is not); garbage outputs on HTTP 200 are
        charged like any other output."""
        now = self.now_s()
        with self._lock:
            jobs = [(state.profile, job) for state in self._providers.values() for job in state.jobs.values()]
        records: list[BillingRecord] = []
        for profile, job in jobs:
            phase = self.phase(job, now)
            ended = self.cancelled_at(job, now) if phase is Phase.CANCELLED else job.done_s
            # A failed job (preempted or not) ran until it failed: billed where the unit is GPU time.
            if phase not in (Phase.DONE, Phase.CANCELLED, Phase.FAILED) or ended is None:
                continue
            record = bill(job, profile, ended_s=ended, finished=phase is Phase.DONE)
            if record is not None:
                records.append(record)
        return sorted(records, key=lambda record: record.billed_at_s)

    def stats(self) -> Mapping[str, ProviderStats]:
        """Per-provider counters, evaluated at the current scenario time."""
        now = self.now_s()
        billed: dict[str, list[float]] = {name: [] for name in self._providers}
        for record in self.billing():
            billed[record.provider].append(record.usd)
        out: dict[str, ProviderStats] = {}
        for name, state in self._providers.items():
            with self._lock:
                jobs = list(state.jobs.values())
                rejections = Counter(state.rejections)
            phases = {job.id: self.phase(job, now) for job in jobs}
            counts = Counter(phases.values())
            done = [job.truth for job in jobs if phases[job.id] is Phase.DONE]
            out[name] = ProviderStats(
                submitted=len(jobs) + rejections["5xx"],
                queued=counts[Phase.QUEUED],
                running=counts[Phase.RUNNING],
                completed=counts[Phase.DONE],
                failed=counts[Phase.FAILED],
                cancelled=counts[Phase.CANCELLED],
                defective=sum(1 for truth in done if not truth.clean and not truth.garbage),
                garbage=sum(1 for truth in done if truth.garbage),
                rejected_5xx=rejections["5xx"],
                rate_limited=rejections["rate_limited"],
                outage_rejections=rejections["outage"],
                before_retry_after=rejections["before_retry_after"],
                resets=rejections["reset"],
                cold_starts=rejections["cold_starts"],
                preempted=rejections["preempted"],
                billed_usd=math.fsum(billed[name]),
            )
        return out
