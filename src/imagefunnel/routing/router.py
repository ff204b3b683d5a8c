"""The router: place each request on the provider with the least expected cost per accepted image.

For every request it filters the providers (capable, permitted, meeting the job's requirements,
breaker not open), prices them from the price book, asks the policy for an order, and dispatches
along it: the first is tried (hedged by the second when hedging is on), the rest form the fallback
chain tried on timeout, 5xx, 429 or garbage. Scorer verdicts come back through
:meth:`Router.observe_verdict` and teach the pass-rate posteriors the default policy ranks by.

Each option's expected latency is its expected *completion* (``routing.capacity``): the wait behind
the requests already in flight or queued there, plus its service time (plus a cold start). An option
that would complete after the job's deadline is not admitted while another would complete in time
(it stays at the end of the fallback chain), so a cheap one-slot box whose queue would make the job
late spills the overflow to a dearer provider instead of queueing it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from imagefunnel.errors import (
    NoProviderAvailable,
    NotAdmitted,
    ProviderError,
    ProviderUnavailable,
    describe,
)
from imagefunnel.providers.base import (
    Capabilities,
    DeclaresSlots,
    Generation,
    GenerationRequest,
    Provider,
    Quote,
)
from imagefunnel.routing.budget import BudgetGuard
from imagefunnel.routing.capability import Requirements, exclusion
from imagefunnel.routing.capacity import CapacityBook
from imagefunnel.routing.dispatch import Attempt, Dispatcher, HedgeSettings, TimeoutSettings
from imagefunnel.routing.health import HealthTracker, HealthView
from imagefunnel.routing.ledger import AttemptLedger, Grouping, SpendBook, SpendLine
from imagefunnel.routing.passrates import PassRateBook, PassRateKey
from imagefunnel.routing.policies import CostPerAcceptedPolicy, Option, Policy, Situation
from imagefunnel.routing.pricebook import PriceBook, ProviderTraits

__all__ = ["AttemptLedger", "ReportsQueue", "RouteContext", "RouteOptions", "Router"]

_DEFAULT_TRAITS = ProviderTraits()
# While every acceptable provider is busy with a half-open trial, look again this often.
_TRIAL_POLL_S = 0.05
# A provider that failed a request with a transient error (5xx) is tried again, after this backoff
# doubled per failure and at most this often, when nothing else is ready: one 503 while the others
# are throttled must not fail the request.
_TRANSIENT_BACKOFF_S = 0.25
_TRANSIENT_RETRIES = 2
# A transient failure of a provider that has been delivering, with no other failure lately (its
# error-rate EWMA after this one failure is about 0.1, after two about 0.19), is an outlier, not a
# sign that it is going down: while it stays the policy's first choice the request backs off and
# tries it again rather than fail over to a dearer, slower one (a lone 500 from a $0.018, 4 s
# provider sent the request to a $0.030, 7 s one). A second failure lately fails over at once.
_ISOLATED_ERROR_RATE = 0.15
# A provider's own queue depth is asked for at most this often (ComfyUI: GET /queue).
_DEPTH_REFRESH_S = 1.0
# Admission counts an option's queue wait this much longer than its estimate: the wait behind N
# requests is the sum of N runs that each vary (and a learned service time that drifts), so a
# request whose mean completion lands just inside the deadline would miss it about half the time,
# be cut off unserved and count as failed (box-deadline: 1.4 % of requests at 0, none at 0.2).
_QUEUE_WAIT_SLACK = 0.2


class _QueueEstimate(Protocol):
    @property
    def queue_depth(self) -> int: ...

    @property
    def exec_s(self) -> float: ...


@runtime_checkable
class ReportsQueue(Protocol):
    """A provider whose protocol tells its queue depth (ComfyUI's ``/queue``); such a server runs
    one prompt at a time unless its traits say otherwise."""

    async def estimate(self, request: GenerationRequest) -> _QueueEstimate: ...


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """What the router would do with a request now: ``ranked`` in the order it would try them (the
    first is dispatched, the rest are the fallback chain); when nothing is ready, ``wait_s`` is how
    long until a cooling provider may be tried again (``None``: never, no provider can take it)."""

    ranked: tuple[Option, ...]
    wait_s: float | None = None


def _permit_all(_name: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class RouteContext:
    """Who is buying: the job (for the ledger), its use case, deadline, budgets and constraints."""

    job_id: str
    wave: int
    deadline: float  # absolute, on the router's clock
    budget: BudgetGuard | None = None
    permits: Callable[[str], bool] = _permit_all
    use_case: str = "generic"
    requirements: Requirements = field(default_factory=Requirements)
    tenant_budget: BudgetGuard | None = None


class Router:
    """Routes generation requests; see the module docstring. ``policy`` defaults to
    :class:`~imagefunnel.routing.policies.CostPerAcceptedPolicy`."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        ledger: AttemptLedger,
        clock: Callable[[], float] = time.monotonic,
        health: HealthTracker | None = None,
        policy: Policy | None = None,
        pass_rates: PassRateBook | None = None,
        prices: PriceBook | None = None,
        traits: Mapping[str, ProviderTraits] | None = None,
        request_timeout_s: float = 60.0,
        timeouts: TimeoutSettings | None = None,
        hedging: HedgeSettings | None = None,
        seed: int = 0,
        capacity_aware: bool = True,
    ) -> None:
        if not providers:
            raise NoProviderAvailable("the router needs at least one provider")
        self._providers = {p.name: p for p in providers}
        self._clock = clock
        self.health = health or HealthTracker(clock=clock)
        self.policy: Policy = policy or CostPerAcceptedPolicy(seed=seed)
        self.pass_rates = pass_rates or PassRateBook()
        self.prices = prices or PriceBook(clock=clock)
        self.spend = SpendBook()
        self._traits = dict(traits or {})
        self._timeouts = timeouts or TimeoutSettings(max_s=request_timeout_s)
        self._caps: dict[str, Capabilities] = {}
        # False: the router before the capacity model (latency = observed EWMA, no admission by
        # expected completion); kept as the benchmark's baseline.
        self._capacity_aware = capacity_aware
        self.capacity = CapacityBook(clock=clock)
        self._depth_asked: dict[tuple[str, str], float] = {}
        self._depth_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Seconds each routing decision took (filter + price + rank), for the latency benchmark.
        self.decision_times: deque[float] = deque(maxlen=100_000)
        self._dispatcher = Dispatcher(
            providers=self._providers,
            ledger=ledger,
            spend=self.spend,
            health=self.health,
            prices=self.prices,
            pass_rates=self.pass_rates,
            clock=clock,
            hedging=hedging,
            capacity=self.capacity,
            slots=self.slots,
        )

    @property
    def provider_names(self) -> list[str]:
        return list(self._providers)

    def provider(self, name: str) -> Provider | None:
        """The adapter called ``name``, if this router has one (resume re-attaches through it)."""
        return self._providers.get(name)

    def slots(self, name: str) -> int | None:
        """Requests provider ``name`` runs at once, the one answer for routing and for quoting: its
        traits' ``slots``, else what the provider declares (a providers file's ``slots``, a local
        worker pool's workers), else 1 for a server that reports its queue (ComfyUI), else unknown
        (``None``: learned from latencies, see ``routing.capacity``)."""
        declared = self._traits.get(name, _DEFAULT_TRAITS).slots
        if declared is not None:
            return declared
        provider = self._providers.get(name)
        if isinstance(provider, DeclaresSlots) and provider.slots is not None:
            return provider.slots
        return 1 if isinstance(provider, ReportsQueue) else None

    @property
    def hedges(self) -> int:
        return self._dispatcher.hedges

    def observe_verdict(self, provider: str, model: str, use_case: str, passed: bool) -> None:
        """The scorer's verdict on a generation this router bought (teaches the pass rates)."""
        self.pass_rates.observe(PassRateKey(provider, model, str(use_case)), passed)

    def spend_report(self, *, by: Grouping) -> list[SpendLine]:
        """Expected (quoted) vs actual (charged) spend of this router's attempts."""
        return self.spend.report(by=by)

    async def quotes(self, request: GenerationRequest, ctx: RouteContext) -> list[Quote]:
        """Quotes of the capable, permitted providers, cheapest first (health not considered)."""
        await self._prepare(request, ctx, frozenset())
        now = self._clock()
        found = [
            self._option(name, request, ctx, now, str(ctx.use_case))
            for name in self._candidates(request, ctx, frozenset())
        ]
        return sorted((option.priced.quote for option in found if option is not None), key=lambda q: q.usd)

    async def options(
        self, request: GenerationRequest, ctx: RouteContext, *, tried: Set[str] = frozenset()
    ) -> RouteOptions:
        """The options this router would dispatch ``request`` along now, ranked by its policy, and
        the wait when none is ready: the decision :meth:`generate` acts on, from the same steps
        (capabilities and stale quotes fetched, queue depths asked, hard filters, admission by
        expected completion). ``tried``: providers to leave out (those a request already failed on).

        Nothing is bought; a policy that draws (``cost_per_accepted``'s Thompson draw) draws here as
        it would for a request, so the next decision of this router may differ.
        """
        await self._prepare(request, ctx, tried)
        ranked, wait = self._decide(request, ctx, tried)
        return RouteOptions(tuple(ranked), wait)

    async def generate(self, request: GenerationRequest, ctx: RouteContext) -> Generation:
        """Buy one generation along the policy's order; raise ``NoProviderAvailable`` if every
        acceptable provider failed, and ``BudgetExceeded`` before buying anything over budget."""
        tried: set[str] = set()
        transient: dict[str, int] = {}  # provider -> transient failures of this request
        errors: list[str] = []
        numbers = itertools.count(1)
        while True:
            if self._clock() >= ctx.deadline:
                # Name what failed, even if it failed for an earlier request of the job.
                raise self._out_of_time(request, errors)
            again = self._retry_in_place(request, ctx, transient, tried)
            decided = await self.options(request, ctx, tried=tried if again is None else tried - {again[0]})
            ranked, wait = decided.ranked, decided.wait_s
            if again is not None:
                name, backoff = again
                if ranked and ranked[0].provider == name:
                    await asyncio.sleep(backoff)
                    tried.discard(name)
                    continue
                ranked = tuple(option for option in ranked if option.provider != name)
            if not ranked:
                retry = _transient_retry(transient, tried)
                if retry is not None and (wait is None or retry[1] < wait):
                    name, backoff = retry
                    if self._clock() + backoff >= ctx.deadline:
                        raise self._out_of_time(request, errors)
                    await asyncio.sleep(backoff)
                    tried.discard(name)
                    continue
                if wait is None:
                    raise NoProviderAvailable(
                        _why(
                            f"no provider could generate {request.model}",
                            errors or self._last_errors(request),
                        )
                    )
                if self._clock() + wait >= ctx.deadline:
                    raise NoProviderAvailable(
                        _why(
                            "every capable provider is cooling down past the deadline",
                            errors or self._last_errors(request),
                        )
                    )
                await asyncio.sleep(wait)
                continue
            attempts = [self._attempt(request, ctx, option, numbers) for option in ranked[:2]]
            generation, failures = await self._dispatcher.run(attempts)
            for name, exc in failures:
                if isinstance(exc, NotAdmitted):
                    continue  # not a failure: decide again, it is a cooling option now
                tried.add(name)
                errors.append(describe(exc))
                if isinstance(exc, ProviderUnavailable):
                    transient[name] = transient.get(name, 0) + 1
            if generation is not None:
                return generation

    def _retry_in_place(
        self, request: GenerationRequest, ctx: RouteContext, transient: Mapping[str, int], tried: set[str]
    ) -> tuple[str, float] | None:
        """The provider this request failed on transiently to consider again after a short backoff,
        ranked against the others (``_ISOLATED_ERROR_RATE``): one with successes behind it, its
        breaker closed, no other failure lately, and time for the backoff before the deadline."""
        retry = _transient_retry(transient, tried)
        if retry is None:
            return None
        name, backoff = retry
        view = self.health.view(name, request.model)
        if (
            view.samples == 0
            or view.error_rate >= _ISOLATED_ERROR_RATE
            or not self.health.available(name, request.model)
            or self._clock() + backoff >= ctx.deadline
        ):
            return None
        return retry

    def _last_errors(self, request: GenerationRequest) -> list[str]:
        """What each provider last failed with (a quote or a request), so a stop names its cause."""
        found = []
        for name in self._providers:
            if name in self._caps and request.model in self._caps[name].models:
                error = self.health.state(name, request.model).last_error
                if error:
                    found.append(f"{name} last failed: {error}")
        return found

    def _out_of_time(self, request: GenerationRequest, errors: list[str]) -> NoProviderAvailable:
        """The stop of a request the deadline overtook: this request's errors (else each provider's
        last), and what each provider failed with most where those do not say it."""
        named = errors or self._last_errors(request)
        return NoProviderAvailable(
            _why("the job's deadline has passed", named + self._usual_errors(request, named))
        )

    def _usual_errors(self, request: GenerationRequest, named: list[str]) -> list[str]:
        """Each provider's most frequent kind of failure, where ``named`` does not already say it:
        a job that ran out of time after many preemptions names them, not only its last timeout."""
        found = []
        for name in self._providers:
            if name not in self._caps or request.model not in self._caps[name].models:
                continue
            st = self.health.state(name, request.model)
            if not st.errors_by_type:
                continue
            kind, count = max(st.errors_by_type.items(), key=lambda item: item[1])
            if any(f"{kind}:" in line for line in named):
                continue
            found.append(
                f"{name} failed mostly with ({count} of {st.failures}): {st.first_error_by_type[kind]}"
            )
        return found

    # -- deciding ----------------------------------------------------------------------------
    def _candidates(self, request: GenerationRequest, ctx: RouteContext, tried: Set[str]) -> list[str]:
        """Providers not yet tried, permitted, with capabilities loaded (hard filters come later)."""
        return [
            name for name in self._providers if name not in tried and name in self._caps and ctx.permits(name)
        ]

    async def _prepare(self, request: GenerationRequest, ctx: RouteContext, tried: Set[str]) -> None:
        """Fetch what the decision needs and has not cached: capabilities, stale quotes."""
        missing = [p for name, p in self._providers.items() if name not in self._caps and ctx.permits(name)]
        for provider in missing:
            self._caps[provider.name] = await provider.capabilities()
        stale = [
            self._providers[name]
            for name in self._candidates(request, ctx, tried)
            if request.model in self._caps[name].models
            # A provider whose breaker is open is not asked for prices either: that would hammer it.
            and self.health.available(name, request.model)
            and self.prices.fresh(name, request) is None
        ]
        if stale:
            results = await asyncio.gather(
                *(self.prices.refresh(p, request) for p in stale), return_exceptions=True
            )
            for provider, result in zip(stale, results, strict=True):
                if isinstance(result, ProviderError):
                    # A provider that cannot even quote is probably down: a passive failure signal.
                    self.health.record_failure(provider.name, describe(result), model=request.model)
                elif isinstance(result, BaseException):
                    raise result
        if self._capacity_aware:
            await self._refresh_depths(request, ctx, tried)

    async def _refresh_depths(self, request: GenerationRequest, ctx: RouteContext, tried: Set[str]) -> None:
        """Ask the providers that report their queue how deep it is (at most once a second each;
        concurrent decisions wait for the one question in flight instead of deciding without it)."""
        now = self._clock()
        waits: list[asyncio.Task[None]] = []
        for name in self._candidates(request, ctx, tried):
            provider = self._providers[name]
            if not (
                isinstance(provider, ReportsQueue)
                and request.model in self._caps[name].models
                and self.health.available(name, request.model)
            ):
                continue
            key = (name, request.model)
            task = self._depth_tasks.get(key)
            if task is None and now - self._depth_asked.get(key, -math.inf) >= _DEPTH_REFRESH_S:
                self._depth_asked[key] = now
                task = asyncio.get_running_loop().create_task(self._ask_depth(provider, name, request))
                self._depth_tasks[key] = task
                task.add_done_callback(functools.partial(self._depth_asked_done, key))
            if task is not None:
                waits.append(task)
        if waits:
            await asyncio.gather(*(asyncio.shield(task) for task in waits))

    def _depth_asked_done(self, key: tuple[str, str], _task: asyncio.Task[None]) -> None:
        self._depth_tasks.pop(key, None)

    async def _ask_depth(self, provider: ReportsQueue, name: str, request: GenerationRequest) -> None:
        try:
            estimate = await provider.estimate(request)
        except ProviderError:
            return  # its quote failing says the same; the health tracker hears of it there
        self.capacity.note_depth(
            name, request.model, int(estimate.queue_depth), service_s=float(estimate.exec_s)
        )

    def _decide(
        self, request: GenerationRequest, ctx: RouteContext, tried: Set[str]
    ) -> tuple[list[Option], float | None]:
        """The ranked options, or (nothing, how long until one may be ready; None: never), from
        what :meth:`_prepare` fetched (no I/O: this is what :attr:`decision_times` measures)."""
        started = time.perf_counter()
        now = self._clock()
        ready: list[Option] = []
        cooling: list[Option] = []
        use_case = str(ctx.use_case)
        for name in self._candidates(request, ctx, tried):
            option = self._option(name, request, ctx, now, use_case)
            if option is None:
                continue
            (ready if self.health.available(name, request.model) else cooling).append(option)
        situation = Situation(now=now, time_left_s=ctx.deadline - now, use_case=use_case)
        ranked = self._admitted(ready, situation) if ready else []
        wait: float | None = None
        if not ranked and cooling:
            acceptable = self.policy.rank(cooling, situation)
            if acceptable:
                wait = max(
                    _TRIAL_POLL_S,
                    min(self.health.cooldown_remaining_s(o.provider, o.model) for o in acceptable),
                )
        self.decision_times.append(time.perf_counter() - started)
        return ranked, wait

    def _admitted(self, ready: list[Option], situation: Situation) -> list[Option]:
        """The policy's order of the options that would complete before the deadline (a queue's
        wait counted with ``_QUEUE_WAIT_SLACK``), then of the ones that would not (tried only if
        none of the first can deliver)."""
        if not self._capacity_aware:
            return self.policy.rank(ready, situation)
        left = situation.time_left_s
        in_time = [o for o in ready if _completes_in(o, left)]
        late = [o for o in ready if not _completes_in(o, left)]
        if not in_time or not late:
            return self.policy.rank(ready, situation)
        # A policy that drops options (``single``) drops them from both lists.
        return self.policy.rank(in_time, situation) + self.policy.rank(late, situation)

    def _option(
        self, name: str, request: GenerationRequest, ctx: RouteContext, now: float, use_case: str
    ) -> Option | None:
        """The option of provider ``name``, or ``None`` if a hard filter excludes it or it has no
        usable quote (its quote failed: it is not an option for this decision)."""
        traits = self._traits.get(name, _DEFAULT_TRAITS)
        view = self.health.view(name, request.model)
        last = view.last_success_at
        cold = traits.cold_start_s > 0 and (last is None or now - last > traits.warm_for_s)
        cold_s = traits.cold_start_s if cold else 0.0
        queue_wait = 0.0
        if self._capacity_aware:
            done = self.capacity.completion(
                name, request.model, slots=self.slots(name), prior_service_s=_latency(view, traits)
            )
            queue_wait = done.queue_wait_s
            latency = done.total_s + cold_s
        else:
            latency = _latency(view, traits) + cold_s
        if exclusion(self._caps[name], traits, request, ctx.requirements, expected_latency_s=latency):
            return None
        cached = self.prices.fresh(name, request)
        if cached is None:
            return None
        return Option(
            provider=name,
            model=request.model,
            priced=self.prices.priced(cached[0], cached[1], cold_start_s=cold_s),
            pass_rate=self.pass_rates.get(PassRateKey(name, request.model, use_case)),
            health=view,
            expected_latency_s=latency,
            queue_wait_s=queue_wait,
        )

    # -- dispatching -------------------------------------------------------------------------
    def _attempt(
        self, request: GenerationRequest, ctx: RouteContext, option: Option, numbers: Iterator[int]
    ) -> Attempt:
        budgets = tuple(guard for guard in (ctx.budget, ctx.tenant_budget) if guard is not None)
        return Attempt(
            request=request,
            option=option,
            numbers=numbers,
            job_id=ctx.job_id,
            wave=ctx.wave,
            use_case=str(ctx.use_case),
            budgets=budgets,
            timeout_s=self._timeout_for(option, ctx),
        )

    def _timeout_for(self, option: Option, ctx: RouteContext) -> float:
        t = self._timeouts
        limit = t.max_s
        p99 = option.health.p99_s
        if p99 is not None:
            floor = max(t.min_s, 2.0 * option.expected_latency_s)
            limit = min(limit, max(floor, t.factor * p99))
        # The wait expected in the provider's own queue (a one-slot box busy with the requests
        # ahead) comes before the service the limit is for: a request is not cut off for waiting.
        limit += max(0.0, option.queue_wait_s)
        left = ctx.deadline - self._clock()
        return max(0.001, min(limit, left))


def _completes_in(option: Option, left_s: float) -> bool:
    """Whether ``option`` is expected to complete within ``left_s``, its queue wait with slack."""
    return option.expected_latency_s + _QUEUE_WAIT_SLACK * option.queue_wait_s <= left_s


def _latency(view: HealthView, traits: ProviderTraits) -> float:
    latency = view.latency_s
    return traits.expected_latency_s if latency is None or not math.isfinite(latency) else latency


def _transient_retry(transient: Mapping[str, int], tried: set[str]) -> tuple[str, float] | None:
    """The tried provider to give another go after a transient failure, and the backoff before it."""
    left = [
        (count, name) for name, count in transient.items() if name in tried and count <= _TRANSIENT_RETRIES
    ]
    if not left:
        return None
    count, name = min(left)
    return name, _TRANSIENT_BACKOFF_S * 2 ** (count - 1)


def _why(headline: str, errors: list[str]) -> str:
    return f"{headline}: {'; '.join(errors)}" if errors else f"{headline}: none is capable and permitted"
