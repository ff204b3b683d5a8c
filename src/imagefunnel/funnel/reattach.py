"""Re-attaching a resumed job to the requests its crashed process left at the providers.

An attempt the ledger still holds as ``dispatched`` was cut off by a crash. When the provider had
named it (``provider_request_id``, recorded at submission) and speaks a queue protocol, its result is
fetched instead of bought again: the ledger is settled with the provider's own charge and the image
comes back to be scored like any other candidate. What cannot be re-attached (no id, a provider this
process does not have, a synchronous protocol) is left for the store to close at its quote.

An attempt with no id, cut off between the provider accepting it and the ledger naming it, is looked
for first where the protocol lists what it took (``Findable``: Replicate's prediction list, fal's
request listing; matched by prompt, seed and size, sent after the attempt's intent): found once, it
is named and re-attached like the others; not found (or found twice) it stays unnamed and is closed
``lost`` at its quote. That stays the close of an attempt the listing never shows, even though a
request fal never took costs nothing: a listing that has not caught up, a request still queued past
the adapter's wait, or a clock skewed past the search window all look the same from here, and a
charge of 0 would then under-count a spend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from imagefunnel.errors import ProviderError
from imagefunnel.providers.base import Findable, Generation, GenerationRequest, Provider, Reattachable
from imagefunnel.store import InFlight, Store

__all__ = ["Fetched", "name_unnamed", "reattach_in_flight"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """The image of a request bought before the crash, fetched from its provider."""

    request: GenerationRequest
    wave: int
    generation: Generation


async def name_unnamed(
    in_flight: Sequence[InFlight],
    *,
    store: Store,
    job_id: str,
    provider_for: Callable[[str], Provider | None],
    request_for: Callable[[str], GenerationRequest | None],
    done_requests: frozenset[str],
    timeout_s: float | None = None,
) -> int:
    """Name in the ledger every unnamed attempt its provider can find (``Findable``); returns how
    many were named. Ids the job's ledger already holds are never given to a second attempt.

    The attempts are looked for at once: a provider whose listing shows a request only once it
    has ended (fal) keeps looking for a while, and one such wait per attempt in a row would add
    up. ``timeout_s`` bounds the whole search (the resumed job's time left): what is not found
    by then stays unnamed, closed ``lost`` at its quote."""
    known = {row.provider_request_id for row in store.ledger(job_id) if row.provider_request_id}
    exclude = frozenset(known)
    searches: list[tuple[InFlight, asyncio.Task[str | None]]] = []
    for row in in_flight:
        if row.provider_request_id or row.request_id in done_requests or row.started_at is None:
            continue
        provider = provider_for(row.provider)
        request = request_for(row.request_id)
        if not isinstance(provider, Findable) or request is None:
            continue
        search = _find(provider, request, since=row.started_at, exclude=exclude)
        searches.append((row, asyncio.ensure_future(search)))
    if not searches:
        return 0
    tasks = [task for _, task in searches]
    pending = set(tasks)
    if timeout_s is None or timeout_s > 0:  # no time left: every search is given up at once
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    named = 0
    for row, task in searches:  # in ledger order, so which attempt gets a contested id is stable
        found = None if task in pending else task.result()
        # Found by two attempts' searches at once (each excluded only what the ledger held before).
        if found is None or found in known:
            continue
        store.submitted(request_id=row.request_id, attempt=row.attempt, provider_request_id=found)
        known.add(found)
        named += 1
    return named


async def _find(
    provider: Findable, request: GenerationRequest, *, since: datetime, exclude: frozenset[str]
) -> str | None:
    try:
        return await provider.find_submitted(request, since=since, exclude=exclude)
    except ProviderError:
        return None  # the list cannot be read now: closed ``lost`` at its quote, as before


async def reattach_in_flight(
    in_flight: Sequence[InFlight],
    *,
    store: Store,
    provider_for: Callable[[str], Provider | None],
    request_for: Callable[[str], GenerationRequest | None],
    done_requests: frozenset[str],
    concurrency: int,
    timeout_s: float,
    settled: bool = False,
) -> list[Fetched]:
    """Fetch what every re-attachable attempt produced; settle each one fetched (or failed) in the
    ledger. ``done_requests``: requests that already have a candidate (a second image of one would
    be thrown away). At most ``timeout_s`` is spent: whatever is not back by then stays in flight.
    ``settled``: the attempts already succeeded and were charged (bought, then lost while being
    scored); their images are fetched again and the ledger is left as it is."""
    by_request: dict[str, list[InFlight]] = {}
    for row in in_flight:
        if row.provider_request_id and row.request_id not in done_requests:
            by_request.setdefault(row.request_id, []).append(row)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(rows: list[InFlight]) -> Fetched | None:
        async with gate:
            # A hedged request may have had two attempts out: the first image back is its answer,
            # the other stays in flight and is closed at its quote.
            for row in rows:
                fetched = await _fetch(
                    row, store=store, provider_for=provider_for, request_for=request_for, settled=settled
                )
                if fetched is not None:
                    return fetched
        return None

    if not by_request or timeout_s <= 0:
        return []
    tasks = [asyncio.ensure_future(one(rows)) for rows in by_request.values()]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [fetched for task in done if (fetched := task.result()) is not None]


async def _fetch(
    row: InFlight,
    *,
    store: Store,
    provider_for: Callable[[str], Provider | None],
    request_for: Callable[[str], GenerationRequest | None],
    settled: bool,
) -> Fetched | None:
    provider = provider_for(row.provider)
    request = request_for(row.request_id)
    if not isinstance(provider, Reattachable) or request is None or row.provider_request_id is None:
        return None
    started = time.monotonic()
    try:
        generation = await provider.reattach(request, row.provider_request_id)
    except ProviderError as exc:
        if settled:
            return None  # paid for and gone at the provider too: the ledger already says what it cost
        # The provider's own account of how the request ended (failed, cancelled, unknown there).
        store.end_attempt(
            request_id=row.request_id,
            attempt=row.attempt,
            status="failed",
            charged_usd=exc.charged_usd,
            latency_s=time.monotonic() - started,
            error=f"re-attached after a crash: {exc}",
            error_type=type(exc).__name__,
        )
        return None
    if settled:
        return Fetched(request, row.wave, generation)
    store.end_attempt(
        request_id=row.request_id,
        attempt=row.attempt,
        status="succeeded",
        charged_usd=generation.charged_usd,
        latency_s=generation.latency_s,
        provider_request_id=generation.provider_request_id,
    )
    return Fetched(request, row.wave, generation)
