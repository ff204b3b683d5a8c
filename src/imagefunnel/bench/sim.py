"""An in-process provider over the market's protocol-independent core, for virtual-time benchmarks.

``SimProvider`` makes exactly the market decisions the HTTP emulators make (``Market.submit``: the
same prices, rate limits, 5xx, queue and processing times, failures, garbage and defects, the same
billing) but skips the wire and the pixels: it waits for the job's completion on the loop's clock
and returns an empty image whose truth the benchmark reads from the side channel. What each wire
protocol would add is modelled where it changes money or time:

* results are seen at the adapter's next status poll (``poll_interval_s``);
* refusals are raised as the adapters raise them: a 429 (the steady rate limit or a ``rate_limit``
  fault window) as ``RateLimited`` with its Retry-After rounded up to whole seconds, a 5xx (steady or
  a ``server_error`` window) as ``ProviderUnavailable``;
* an outage makes quotes, submissions and result fetches fail with 503 (a result finished during an
  outage is still billed, as the market bills it);
* truncated garbage (``garbage_rate`` or a ``garbage`` window) fails decoding in the adapter
  (``BadOutput``, billed); black garbage is returned and left to the scorer;
* a request whose submit answer a reset lost is found again where the protocol lists what it
  took (Replicate's prediction list, fal's request listing) and followed like any other; on the
  others (Together, OpenAI) it is lost, booked as possibly charged;
* a cancelled request is cancelled at the provider as its protocol allows: fal while queued,
  Replicate until done (GPU time so far is billed), OpenAI/Together never (the image is bought);
  the cancellation carries what the market bills for the request (``carry_charge``), as the real
  adapters say it (Replicate reads the GPU seconds off its cancel response): without it the router
  books the quote for a hedge's loser and nothing for a request its timeout cut off;
* a provider with ``slots`` (a self-hosted box) runs that many requests at once: the others wait
  first in, first out on the virtual clock before the market sees them (a request cancelled while
  waiting leaves the queue unbilled), and a slot frees when its request finishes or is cancelled at
  the provider.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from imagefunnel.errors import BadOutput, ConnectionLost, ProviderError, ProviderUnavailable, RateLimited
from imagefunnel.market.billing import bill
from imagefunnel.market.defects import Defect
from imagefunnel.market.engine import ImageInput, Job, Market, Phase, Rejection
from imagefunnel.market.scenario import ProviderProfile
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Quote,
    carry_charge,
)
from imagefunnel.providers.pricing import gpt_image_size, gpt_image_tokens

__all__ = ["SimProvider", "expected_usd", "price_unit"]

_UNITS = {
    "megapixel": PriceUnit.PER_MEGAPIXEL,
    "image": PriceUnit.PER_IMAGE,
    "gpu_second": PriceUnit.PER_GPU_SECOND,
    "token": PriceUnit.PER_TOKEN,
}
_PER_MILLION = 1_000_000
# Protocols whose provider lists the requests it took with their input: a submit whose answer was
# lost is found there and followed (``find_submitted``).
_LISTS_WHAT_IT_TOOK = frozenset({"replicate", "fal"})
_CHARS_PER_TOKEN = 4


def price_unit(profile: ProviderProfile) -> PriceUnit:
    return _UNITS[profile.price_unit]


def _tokens(request: GenerationRequest) -> tuple[int, int]:
    """(input, output) tokens a token-priced provider reports for ``request``."""
    width, height = gpt_image_size(request.width, request.height)
    return max(1, math.ceil(len(request.prompt) / _CHARS_PER_TOKEN)), gpt_image_tokens(
        width, height, "medium"
    )


def expected_usd(profile: ProviderProfile, unit_price: float, request: GenerationRequest) -> float:
    """What a request is expected to cost at ``unit_price``, as the provider's adapter would quote it
    (GPU-second providers quote their mean run time)."""
    unit = profile.price_unit
    if unit == "megapixel":
        return unit_price * request.megapixels
    if unit == "image":
        return unit_price
    if unit == "gpu_second":
        return unit_price * sum(profile.processing_s) / 2
    tokens_in, tokens_out = _tokens(request)
    input_usd = profile.pricing.input_usd if profile.pricing is not None else 0.0
    return (tokens_out * unit_price + tokens_in * input_usd) / _PER_MILLION


class SimProvider:
    """One provider of ``market`` as a ``Provider``; its clock is the market's."""

    def __init__(self, market: Market, name: str, *, poll_interval_s: float = 0.25) -> None:
        profile = market.profile(name)
        if profile is None:
            raise KeyError(f"no provider {name!r} in scenario {market.scenario.name!r}")
        self.name = name
        self.market = market
        self.profile = profile
        self._poll_s = poll_interval_s
        self.jobs: dict[str, Job] = {}
        # asyncio.Semaphore wakes its waiters in arrival order: the box's FIFO queue.
        self._gate = asyncio.Semaphore(profile.slots) if profile.slots is not None else None
        self.waiting = 0  # requests queued for a slot now

    async def capabilities(self) -> Capabilities:
        return Capabilities(models=frozenset(self.profile.models), max_width=2048, max_height=2048)

    async def quote(self, request: GenerationRequest) -> Quote:
        self._raise_if_down()
        unit_price = self.visible_unit_price()
        return Quote(
            provider=self.name,
            model=request.model,
            usd=expected_usd(self.profile, unit_price, request),
            unit=price_unit(self.profile),
            unit_price_usd=unit_price,
        )

    @property
    def quotes_list_price(self) -> bool:
        """Whether its quote is a list price (every protocol's adapter but fal's): a bill may
        differ from it (``forecast.price_risk``)."""
        return self.profile.protocol != "fal"

    def visible_unit_price(self) -> float:
        """The unit price this provider's real adapter can see: fal publishes its live price; for
        the others the user configures the list price (the scenario's opening one) and the router
        learns the live price from charges, so the simulation must not tell it more."""
        if self.profile.protocol == "fal":
            return self.market.unit_price(self.name)
        return self.profile.price_at(0.0)

    async def health(self) -> Health:
        down = self.profile.outage_at(self.market.now_s())
        return Health(ok=not down, latency_s=0.0, detail="outage" if down else "")

    async def aclose(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> Generation:
        started = self.market.now_s()
        job = await self.run(request)
        return self._collect(job, request, started)

    async def run(self, request: GenerationRequest) -> Job:
        """Submit ``request`` and wait until the adapter would see it finished; raises the wire's
        errors for refusals, cancels at the provider (as its protocol allows) if cancelled. A
        provider with slots first queues it until one is free."""
        gate = self._gate
        if gate is None:
            return await self._run(request, None)
        self._raise_if_down()  # an outage answers at once, not after the queue
        self.waiting += 1
        try:
            await gate.acquire()
        except asyncio.CancelledError as exc:
            carry_charge(exc, 0.0)  # never reached the provider
            raise
        finally:
            self.waiting -= 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                gate.release()

        return await self._run(request, release)

    async def _run(self, request: GenerationRequest, release: Callable[[], None] | None) -> Job:
        """Submit now; ``release`` (a provider with slots) is called when the provider is done
        with the request."""
        release = release or _nothing
        try:
            self._raise_if_down()
        except ProviderError:
            release()
            raise
        tokens_in, tokens_out = _tokens(request) if self.profile.price_unit == "token" else (0, 0)
        inp = ImageInput(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            seed=request.seed,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )
        outcome = self.market.submit(self.name, request.model, inp)
        if isinstance(outcome, Rejection):
            release()
            raise _rejected(outcome, self.name)
        job = outcome
        self.jobs[job.id] = job
        if job.reset and self.profile.protocol not in _LISTS_WHAT_IT_TOOK:
            # Taken, answer lost, nowhere to look it up: booked as charged, as it will be billed.
            record = bill(job, self.profile, ended_s=job.done_s, finished=not job.fails)
            # The provider still runs it: its slot frees when it is done.
            asyncio.get_running_loop().call_later(max(0.0, job.done_s - self.market.now_s()), release)
            raise ConnectionLost(
                "connection reset after sending",
                provider=self.name,
                charged_usd=record.usd if record else 0.0,
            )
        wait = job.done_s - self.market.now_s()
        # The slot frees when the job finishes, not when the adapter's next poll sees it.
        freed = None if self._gate is None else asyncio.get_running_loop().call_later(max(0.0, wait), release)
        try:
            await asyncio.sleep(math.ceil(wait / self._poll_s) * self._poll_s if self._poll_s > 0 else wait)
        except asyncio.CancelledError as exc:
            if self._cancel(job) and freed is not None:
                freed.cancel()
                release()
            carry_charge(exc, self.abandoned_charge(job))
            raise
        return job

    def abandoned_charge(self, job: Job) -> float:
        """What the market bills for ``job`` after a cancel was tried: the GPU time until the cancel
        landed (free if it was still queued, or priced per output), else what it bills once the job
        ends on its own (the image bought, or the GPU time of a failure)."""
        cancelled = self.market.cancelled_at(job)
        if cancelled is not None:
            record = bill(job, self.profile, ended_s=cancelled, finished=False)
        else:
            record = bill(job, self.profile, ended_s=job.done_s, finished=not job.fails)
        return record.usd if record is not None else 0.0

    def charge(self, job: Job) -> float:
        """What the market bills for ``job`` once it ended (the provider's own numbers): a finished
        one, or the GPU time a failed one used (free in any per-output unit)."""
        phase = self.market.phase(job)
        if phase not in (Phase.DONE, Phase.FAILED):
            return 0.0
        record = bill(job, self.profile, ended_s=job.done_s, finished=phase is Phase.DONE)
        return record.usd if record is not None else 0.0

    def _collect(self, job: Job, request: GenerationRequest, started: float) -> Generation:
        now = self.market.now_s()
        phase = self.market.phase(job, now)
        charged = self.charge(job)
        if self.profile.outage_at(now):
            raise ProviderUnavailable(
                "HTTP 503 while fetching the result", provider=self.name, charged_usd=charged
            )
        if phase is not Phase.DONE:
            detail = f"request {job.id} ended {phase.value}" + (" (preempted)" if job.preempted else "")
            raise ProviderUnavailable(detail, provider=self.name, charged_usd=charged)
        if job.truth.garbage and job.truth.defect is Defect.TRUNCATED:
            raise BadOutput("output does not decode (truncated)", provider=self.name, charged_usd=charged)
        return Generation(
            request_id=request.request_id,
            provider=self.name,
            model=request.model,
            image=b"",
            charged_usd=charged,
            latency_s=now - started,
            provider_request_id=job.id,
            meta={"unit_price_usd": repr(job.unit_price_usd), "price_unit": self.profile.price_unit},
        )

    def _raise_if_down(self) -> None:
        rejection = self.market.outage(self.name)
        if rejection is not None:
            raise _rejected(rejection, self.name)

    def _cancel(self, job: Job) -> bool:
        """Cancel ``job`` as the protocol allows; whether it stopped there."""
        protocol = self.profile.protocol
        if protocol == "fal":
            return self.market.cancel(job)
        if protocol == "replicate":
            return self.market.cancel(job, running=True)
        # openai / together: a hung-up synchronous call has still bought the image.
        return False


def _nothing() -> None:
    return None


def _rejected(rejection: Rejection, provider: str) -> RateLimited | ProviderUnavailable:
    if rejection.reset:
        # The adapters book the quote here (they cannot tell this reset from one after the
        # provider took the request); the simulation knows nothing was taken.
        return ConnectionLost("connection reset before the request was taken", provider=provider)
    if rejection.status_code == 429:
        retry = rejection.retry_after_s
        # The HTTP apps round Retry-After up to whole seconds; so does this.
        return RateLimited(
            "HTTP 429", provider=provider, retry_after_s=None if retry is None else math.ceil(retry)
        )
    return ProviderUnavailable(f"HTTP {rejection.status_code}: {rejection.detail}", provider=provider)
