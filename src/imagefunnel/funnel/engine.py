"""The wave loop: size a wave from the observed pass rate, buy, score, stop as soon as K pass.

A wave asks for the remaining need over the pass-rate estimate, with a margin; a spec with a
``confidence`` instead asks for the least wave meeting the need with the chance the deadline's
round trips left call for (:mod:`imagefunnel.funnel.waves`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from imagefunnel.errors import BudgetExceeded, ImageError, NoProviderAvailable
from imagefunnel.executors import ScorerConfig, run_in, worker_scorer
from imagefunnel.funnel.events import CandidateScored, FunnelObserver, RequestFailed, WaveStarted
from imagefunnel.funnel.reattach import name_unnamed, reattach_in_flight
from imagefunnel.funnel.requests import prompt_for, reference_images, request_number, seed_for
from imagefunnel.funnel.selection import Ranked, best_k, find_duplicate, perceptual_hash, quality
from imagefunnel.funnel.waves import pass_rate_estimate, wave_size
from imagefunnel.imaging import decode_image
from imagefunnel.providers.base import Generation, GenerationRequest
from imagefunnel.routing import RouteContext, Router
from imagefunnel.routing.budget import BudgetGuard
from imagefunnel.scoring import Scorer, Verdict
from imagefunnel.spec import JobSpec, UseCase
from imagefunnel.store import BlobStore, CandidateRecord, ScoreRecord, Store


@dataclass(slots=True)
class _JobState:
    job_id: str
    spec: JobSpec
    budget: BudgetGuard
    deadline: float
    passed: list[Ranked] = field(default_factory=list)
    hashes: list[tuple[int, str]] = field(default_factory=list)
    generated: int = 0
    requested: int = 0
    refused: int = 0  # requests the budget refused before buying: they do not count against the cap
    failed_requests: int = 0
    last_provider_error: str | None = None
    stop_reason: str | None = None
    references: tuple[bytes, ...] = ()  # the spec's reference photos, sent with every request
    # Providers whose candidate was rejected, for jobs whose every request is the same input
    # (background removal): asking them again would buy the same rejected output.
    rejected_by: set[str] = field(default_factory=set)
    # The slowest round trip of this run's waves (a wave's time over its rounds of ``concurrency``
    # requests), timed only for a spec with a ``confidence``; None until a wave has been timed.
    round_s: float | None = None

    def permits(self, provider: str) -> bool:
        if self.spec.use_case == UseCase.BACKGROUND_REMOVAL and provider in self.rejected_by:
            return False
        return self.spec.providers.permits(provider)

    @property
    def done(self) -> bool:
        return len(self.passed) >= self.spec.deliver or self.stop_reason is not None

    def pass_rate_estimate(self) -> float:
        return pass_rate_estimate(len(self.passed), self.generated)


def score_candidate(
    scoring: Scorer | ScorerConfig, data: bytes, prompt: str | None = None
) -> tuple[Verdict, str | None]:
    """Runs on the executor (a thread, or a worker process given a config): decode once, hash, score.

    A module-level function of picklable arguments, so that a process pool can run it. ``prompt`` is
    the candidate's own prompt (for prompt alignment); the job's references come with the scorer.
    """
    scorer = scoring if isinstance(scoring, Scorer) else worker_scorer(scoring)
    context = dataclasses.replace(scorer.context, prompt=prompt) if prompt else None
    try:
        image = decode_image(data)
    except ImageError:
        return scorer.score_bytes(data, context), None
    verdict = scorer.score(image, context)  # the scorer applies the spec's rules (tier 3)
    return verdict, perceptual_hash(image.rgb)


@dataclass(frozen=True, slots=True)
class FunnelOutcome:
    job_id: str
    status: str  # delivered | partial | failed
    stop_reason: str
    delivered_ids: tuple[int, ...]


class Funnel:
    def __init__(
        self,
        *,
        router: Router,
        scorer: Scorer,
        store: Store,
        blobs: BlobStore,
        executor: Executor | None = None,
        observer: FunnelObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        scorer_config: ScorerConfig | None = None,
    ) -> None:
        self._router = router
        # A process pool cannot be sent the scorer (it holds loaded models): its workers get the
        # config and build their own. ``scorer`` still validates the spec here, before buying.
        self._scoring: Scorer | ScorerConfig = scorer_config if scorer_config is not None else scorer
        self._store = store
        self._blobs = blobs
        self._executor = executor
        self._observer = observer or FunnelObserver()
        self._clock = clock

    async def run(self, spec: JobSpec, *, job_id: str | None = None) -> FunnelOutcome:
        job_id = job_id or uuid.uuid4().hex
        references = reference_images(spec)  # before the job exists: an unreadable photo starts nothing
        self._store.start_job(
            job_id=job_id, name=spec.name, spec_json=spec.model_dump_json(), deliver=spec.deliver
        )
        state = _JobState(
            job_id=job_id,
            spec=spec,
            budget=BudgetGuard(spec.budget_usd),
            deadline=self._clock() + spec.deadline_s,
            references=references,
        )
        return await self._drive(state, first_wave=1)

    async def resume(self, job_id: str, *, spec: JobSpec | None = None) -> FunnelOutcome:
        """Carry on a job that stopped mid-way (a crash, a kill): nothing already bought is bought again.

        Attempts in flight when the process died are re-attached where the provider had named them
        (queue protocols), or where it lists one it took with the attempt's input since the attempt
        began (Replicate, fal: a crash before the ledger recorded the id): their images are
        fetched, charged as the provider bills them, and scored.
        The rest have an unknown outcome; they are closed (``interrupted`` when named, ``lost`` when
        not) and counted at their quote, so the budget never under-counts a spend. ``spec``: the
        stored spec as it runs (its reference photos made readable here); default: as stored.
        """
        job = self._store.job(job_id)
        if job.status != "running":
            return FunnelOutcome(
                job_id, job.status, job.stop_reason or "", tuple(self._store.delivered_ids(job_id))
            )
        if spec is None:
            spec = JobSpec.model_validate_json(job.spec_json)
        progress = self._store.progress(job_id)
        # The deadline is wall-clock from the job's creation: time spent down counts against it.
        remaining = spec.deadline_s - progress.age_s
        state = _JobState(
            job_id=job_id,
            spec=spec,
            budget=BudgetGuard(spec.budget_usd, settled_usd=self._store.spent_usd(job_id)),
            deadline=self._clock() + remaining,
            references=reference_images(spec),
        )
        state.passed = [Ranked(cid, quality) for cid, quality in progress.passed]
        state.hashes = list(progress.passed_hashes)
        state.generated = progress.candidates
        state.requested = progress.next_request_index
        # A remover whose cutout of this photo was rejected before the stop would sell the same one.
        state.rejected_by = {
            c.provider for c in self._store.candidates(job_id) if not c.passed and c.duplicate_of is None
        }
        await self._reattach(state)
        self._store.interrupt_in_flight(job_id)
        state.budget = BudgetGuard(spec.budget_usd, settled_usd=self._store.spent_usd(job_id))
        return await self._drive(state, first_wave=progress.last_wave + 1)

    async def _reattach(self, state: _JobState) -> None:
        """Fetch and score what the providers made for the attempts the crash cut off."""

        def request_for(request_id: str) -> GenerationRequest | None:
            n = request_number(request_id)
            return self._request_n(state, n) if n is not None else None

        done = frozenset(c.request_id for c in self._store.candidates(state.job_id))
        # Cut off before the provider named it: found where the provider lists what it took.
        await name_unnamed(
            self._store.in_flight(state.job_id),
            store=self._store,
            job_id=state.job_id,
            provider_for=self._router.provider,
            request_for=request_for,
            done_requests=done,
            # fal shows a request only once it has ended: its adapter waits for one accepted just
            # before the crash (at most its timeout after the intent), never past the deadline.
            timeout_s=state.deadline - self._clock(),
        )
        fetched = await reattach_in_flight(
            self._store.in_flight(state.job_id),
            store=self._store,
            provider_for=self._router.provider,
            request_for=request_for,
            done_requests=done,
            concurrency=state.spec.concurrency,
            timeout_s=state.deadline - self._clock(),
        )
        # Bought and paid for, then lost while being scored: fetched again, not bought again.
        fetched += await reattach_in_flight(
            self._store.bought_unrecorded(state.job_id),
            store=self._store,
            provider_for=self._router.provider,
            request_for=request_for,
            done_requests=done | {item.request.request_id for item in fetched},
            concurrency=state.spec.concurrency,
            timeout_s=state.deadline - self._clock(),
            settled=True,
        )
        for item in fetched:
            await self._score_and_record(state, item.wave, item.request, item.generation)

    async def _drive(self, state: _JobState, *, first_wave: int) -> FunnelOutcome:
        spec = state.spec
        wave = first_wave - 1
        while not state.done:
            size = self._next_wave_size(state)
            if size == 0:
                break
            wave += 1
            self._observer.wave_started(
                WaveStarted(wave, size, spec.deliver - len(state.passed), state.pass_rate_estimate())
            )
            generated_before = state.generated
            started = self._clock() if spec.confidence is not None else 0.0
            await self._run_wave(state, wave, size)
            if spec.confidence is not None:
                rounds = math.ceil(size / spec.concurrency)
                took = (self._clock() - started) / rounds
                state.round_s = took if state.round_s is None else max(state.round_s, took)
            if state.generated == generated_before and state.last_provider_error and not state.done:
                state.stop_reason = f"no provider could deliver a whole wave ({state.last_provider_error})"
        return self._finish(state)

    def _next_wave_size(self, state: _JobState) -> int:
        spec = state.spec
        now = self._clock()
        if now >= state.deadline:
            state.stop_reason = f"deadline of {spec.deadline_s:.0f}s reached"
            return 0
        left = spec.candidate_cap - (state.requested - state.refused)
        if left <= 0:
            state.stop_reason = f"candidate cap of {spec.candidate_cap} reached"
            return 0
        refusal = state.budget.last_refusal
        if state.budget.refusal_stands():
            state.stop_reason = refusal or ""
            return 0
        return wave_size(
            needed=spec.deliver - len(state.passed),
            passed=len(state.passed),
            generated=state.generated,
            left=left,
            confidence=spec.confidence,
            time_left_s=state.deadline - now,
            round_s=state.round_s,
        )

    async def _run_wave(self, state: _JobState, wave: int, size: int) -> None:
        gate = asyncio.Semaphore(state.spec.concurrency)
        requests = [self._request(state, wave, i) for i in range(size)]
        state.requested += size
        await asyncio.gather(*(self._one(state, wave, request, gate) for request in requests))

    def _request(self, state: _JobState, wave: int, index: int) -> GenerationRequest:
        return self._request_n(state, state.requested + index)

    def _request_n(self, state: _JobState, n: int) -> GenerationRequest:
        """The job's ``n``-th request; the same every time, so a resumed job can rebuild it."""
        spec = state.spec
        return GenerationRequest(
            request_id=f"{state.job_id[:12]}-{n:05d}",
            model=spec.model,
            prompt=prompt_for(spec, n),
            width=spec.size.width,
            height=spec.size.height,
            seed=seed_for(spec, n),
            reference_images=state.references,
        )

    async def _one(
        self, state: _JobState, wave: int, request: GenerationRequest, gate: asyncio.Semaphore
    ) -> None:
        async with gate:
            # Checked after waiting for a slot: once K have passed, nothing more is bought.
            if state.done or self._clock() >= state.deadline:
                return
            ctx = RouteContext(
                job_id=state.job_id,
                wave=wave,
                deadline=state.deadline,
                budget=state.budget,
                permits=state.permits,
                use_case=state.spec.use_case,
            )
            try:
                generation = await self._router.generate(request, ctx)
            except BudgetExceeded:
                state.refused += 1
                return  # recorded on the guard; the wave loop stops with its reason
            except NoProviderAvailable as exc:
                state.failed_requests += 1
                state.last_provider_error = str(exc)
                self._observer.request_failed(RequestFailed(request.request_id, wave, str(exc)))
                return
            # Scored inside the slot: ``concurrency`` bounds requests bought but not yet judged, so a
            # scorer slower than the providers cannot let purchases run ahead of the verdicts.
            await self._score_and_record(state, wave, request, generation)

    async def _score_and_record(
        self, state: _JobState, wave: int, request: GenerationRequest, generation: Generation
    ) -> None:
        verdict, phash = await run_in(
            self._executor, score_candidate, self._scoring, generation.image, request.prompt
        )
        duplicate_of = find_duplicate(phash, state.hashes) if phash else None
        sha = self._blobs.put(generation.image)
        scores = tuple(
            ScoreRecord(s.name, s.tier, s.value, s.threshold, s.passed, s.reason) for s in verdict.scores
        )
        if duplicate_of is not None:
            scores += (
                ScoreRecord("duplicate", 1, 1.0, 0.0, False, f"near-duplicate of candidate {duplicate_of}"),
            )
        passed = verdict.passed and duplicate_of is None
        if not verdict.passed:
            state.rejected_by.add(generation.provider)
        # The scorer's verdict (not the dedup) teaches the router this provider's pass rate.
        self._router.observe_verdict(
            generation.provider, generation.model, state.spec.use_case, verdict.passed
        )
        record = CandidateRecord(
            job_id=state.job_id,
            request_id=request.request_id,
            wave=wave,
            provider=generation.provider,
            provider_request_id=generation.provider_request_id,
            blob_sha256=sha,
            content_type=generation.content_type,
            phash=phash,
            passed=passed,
            duplicate_of=duplicate_of,
            quality=quality(verdict),
            charged_usd=generation.charged_usd,
            latency_s=generation.latency_s,
            scores=scores,
        )
        candidate_id = self._store.add_candidate(record)
        state.generated += 1
        if passed:
            # Only passed candidates count as originals: a near-copy of a reject may be the good one.
            state.passed.append(Ranked(candidate_id, record.quality))
            if phash:
                state.hashes.append((candidate_id, phash))
        reasons = tuple(s.reason for s in scores if not s.passed)
        self._observer.candidate_scored(
            CandidateScored(
                candidate_id,
                wave,
                generation.provider,
                passed,
                reasons,
                len(state.passed),
                state.generated,
                state.budget.committed_usd,
            )
        )

    def _finish(self, state: _JobState) -> FunnelOutcome:
        spec = state.spec
        chosen = best_k(state.passed, spec.deliver, hashes=dict(state.hashes))  # diverse best K
        self._store.mark_delivered([r.candidate_id for r in chosen])
        if len(chosen) >= spec.deliver:
            status, reason = "delivered", f"{spec.deliver} of {spec.deliver} passed"
        else:
            why = state.stop_reason or "no more candidates could be generated"
            status = "partial" if chosen else "failed"
            reason = f"delivered {len(chosen)} of {spec.deliver}: {why} after {state.generated} candidates"
        self._store.finish_job(state.job_id, status=status, stop_reason=reason, delivered=len(chosen))
        return FunnelOutcome(state.job_id, status, reason, tuple(r.candidate_id for r in chosen))
