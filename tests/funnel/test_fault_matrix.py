"""The fault matrix: every hosted protocol of the market x every fault it can inject, each run as a real
funnel job over HTTP, with the faulty provider the cheapest (a healthy dearer fallback beside it) or
the only one. Whatever happens, the job ends delivered or with a reason that names the cause, spends
no more than its budget, and its ledger equals the market's billing log; and no request reaches a
provider before the Retry-After of its last 429.

Below HTTP and in the provider's machines: a connection reset after the provider took the request
(it runs and is billed, but its answer never comes), an address that refuses connections or never
answers a handshake, a cold start longer than the adapter waits, and a job whose machine is
preempted mid-generation (Replicate billed by GPU time, so the lost job is partly billed).

The self-hosted ComfyUI box (``comfyui-*`` cells) is in the matrix too: a faulty box, the cheapest,
beside a dearer healthy box, or alone. A box bills GPU seconds from its own execution timestamps
(``MarketServer.gpu_billing``), one prompt at a time, and an interrupt lands only at a node or
sampler-step boundary, so a withdrawn prompt is billed up to where it stopped. Its faults: garbage
(black, truncated), an outage (every call 503), a spot price change, a sampler that hangs until
interrupted (within and past the deadline), a reset of the ``POST /prompt`` connection after the box
queued the prompt, a refused or silent address, a first checkpoint load longer than the adapter
waits (``cold_start``), a crash of the box mid-run (``preemption``: ``execution_error`` with the GPU
time up to it billed) and a dropped websocket (``ws_drop``: the adapter polls ``/history``). What does
not apply: ``rate_limit`` (ComfyUI never answers 429: it queues every valid prompt) and
``server_error`` (its HTTP layer answers 500 only for a malformed body of a queue or history call;
a prompt that fails on the GPU is an ``execution_error``, the ``preemption`` cell).

The local GPU worker (``providers.local``) runs in this process, with no socket or HTTP between the
router and it: none of these faults reaches it, so it has no cells (its failures are unit-tested).

Run one cell with ``-m slow -k <cell id>``: the fixture runs only the cells selected.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagefunnel.bench.scratch import scratch_database
from imagefunnel.cli.demo import DEMO_API_KEY, box_provider, market_provider_config
from imagefunnel.funnel.engine import FunnelOutcome
from imagefunnel.funnel.events import CandidateScored, FunnelObserver
from imagefunnel.jobs import run_funnel_job
from imagefunnel.market.scenario import Scenario
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Provider
from imagefunnel.providers.config import build_provider
from imagefunnel.spec import JobSpec
from imagefunnel.store import BlobStore, Store

pytestmark = pytest.mark.slow

MODELS = {
    "fal": "fal-ai/flux/dev",
    "replicate": "black-forest-labs/flux-schnell",
    "together": "black-forest-labs/FLUX.1-schnell",
    "openai": "gpt-image-1",
}
# The cheapest unit each protocol bills in: per megapixel, per image, per 1M output tokens.
UNITS = {"fal": "megapixel", "replicate": "image", "together": "megapixel", "openai": "token"}
BASE_PRICE = {"fal": 0.02, "replicate": 0.01, "together": 0.02, "openai": 10.0}
FALLBACK_MARKUP = 3.0
BUDGET_USD = 1.0
# Scenario seconds: a fault "for the whole job" lasts this long; a hung request runs twice as long.
FOREVER_S = 1e5
# Mid-job price change: the scenario clock jumps past it once the first candidate is scored.
PRICE_JUMP_AT_S = 1000.0
PRICE_JUMP = 20.0
HANG_TIMEOUT_S = 1.0
DEADLINE_S = 20
# A request that outlives the job: the provider's own timeout is longer than the job's deadline.
SHORT_DEADLINE_S = 3
# Cells run side by side (each its own market and store): most of a cell is waiting on a
# Retry-After, a cooldown or a timeout, so the matrix takes far less than the sum of its cells.
PARALLEL_CELLS = 6

FAULTS: Mapping[str, dict[str, Any]] = {
    "rate_limit": {
        "faults": [
            {
                "kind": "rate_limit",
                "start_s": 0,
                "end_s": FOREVER_S,
                "fraction": 0.6,
                "retry_after_s": [0.2, 0.4],
            }
        ]
    },
    "server_error": {"error_5xx_rate": 1.0},
    "garbage_black": {
        "faults": [{"kind": "garbage", "garbage": "black", "start_s": 0, "end_s": FOREVER_S, "fraction": 1.0}]
    },
    "garbage_truncated": {
        "faults": [
            {"kind": "garbage", "garbage": "truncated", "start_s": 0, "end_s": FOREVER_S, "fraction": 1.0}
        ]
    },
    "outage": {"outages": [{"start_s": 0, "end_s": FOREVER_S}]},
    "price_change": {},  # the schedule depends on the protocol's unit price (see ``_profile``)
    "hang": {"processing_s": [2 * FOREVER_S, 2 * FOREVER_S]},
    "hang_past_deadline": {"processing_s": [2 * FOREVER_S, 2 * FOREVER_S]},
    "reset": {
        "faults": [
            {"kind": "connection_reset", "at": "response", "start_s": 0, "end_s": FOREVER_S, "fraction": 0.5}
        ]
    },
    "refused": {"faults": [{"kind": "unreachable", "mode": "refused"}]},
    "connect_timeout": {"faults": [{"kind": "unreachable", "mode": "timeout"}]},
    # Longer than the faulty provider's timeout (``HANG_TIMEOUT_S``): what was bought while it
    # booted is billed as the protocol bills it, and the job goes on elsewhere or once it is warm.
    "cold_start": {
        "faults": [
            {"kind": "cold_start", "idle_s": 60, "extra_s": [2.0, 2.0], "start_s": 0, "end_s": FOREVER_S}
        ]
    },
    "preemption": {
        "processing_s": [0.5, 0.5],
        "faults": [
            {
                "kind": "preemption",
                "at_fraction": [0.3, 0.7],
                "start_s": 0,
                "end_s": FOREVER_S,
                "fraction": 1.0,
            }
        ],
    },
}
# A box's faults (``ComfyUIBox`` fields), by the matrix's names where the fault is the same.
BOX_MODEL = "sdxl"
BOX_USD_PER_HOUR = 2.0
BOX_FAULTS: Mapping[str, dict[str, Any]] = {
    "garbage_black": {"garbage_rate": 1.0, "garbage_kind": "black"},
    "garbage_truncated": {"garbage_rate": 1.0, "garbage_kind": "truncated"},
    "outage": {"outages": [{"start_s": 0, "end_s": FOREVER_S}]},
    "price_change": {},  # see ``_box``
    "hang": {"hang_rate": 1.0},
    "hang_past_deadline": {"hang_rate": 1.0},
    "reset": {"reset_rate": 0.5},
    "refused": {"unreachable": "refused"},
    "connect_timeout": {"unreachable": "timeout"},
    "cold_start": {"load_s": 2.0},  # the first checkpoint load, longer than the adapter waits
    "preemption": {"error_rate": 1.0},
    "ws_drop": {"ws_drop_rate": 1.0},
}
# Faults whose provider gets the short timeout: it hangs, or boots for longer than it.
SHORT_TIMEOUT = ("hang", "cold_start")
# What a stop reason must name when the job fell short (black images are scored, so they use up
# the candidate cap or the budget even beside a fallback).
CAUSES: Mapping[str, str] = {
    "rate_limit": r"429|RateLimited|rate limit",
    "server_error": r"HTTP 5\d\d|ProviderUnavailable",
    "garbage_black": r"candidate cap of \d+ reached|budget",
    "garbage_truncated": r"BadOutput|truncated",
    "outage": r"HTTP 503|outage|unavailable",
    "price_change": r"budget",
    "hang": r"ProviderTimeout|no (result|image) within",
    "hang_past_deadline": r"deadline",
    "reset": r"reset|disconnected|ReadError|RemoteProtocolError",
    "refused": r"refused|ConnectError",
    "connect_timeout": r"ConnectTimeout|connect",
    "cold_start": r"ProviderTimeout|no (result|image) within",
    "preemption": r"preempted|connection lost|execution_error",
    "ws_drop": r"(?!)",  # the adapter polls /history instead: the job is delivered
}
# A box's adapter refuses a black image itself (a box owner's workflow has no use for one).
# Its crash mid-run is reported as the node that failed (an ``execution_error``).
BOX_CAUSES: Mapping[str, str] = {
    **CAUSES,
    "garbage_black": r"BadOutput|black",
    "preemption": r"failed at node \d+|execution_error",
}
# Cells that reveal a defect not fixable inside the funnel or the adapters: strict, so a fix shows.
KNOWN: Mapping[str, str] = {
    **{
        f"{p}-price_change-{v}": (
            "the ledger charges the price the adapter last knew (a providers file's list price; fal's "
            "pricing cached for 5 s) while the market bills the new price: no wire protocol reports "
            "a request's cost"
        )
        for p in MODELS
        for v in ("fallback", "alone")
    },
}


@dataclass(frozen=True, slots=True)
class Cell:
    protocol: str
    fault: str
    alone: bool

    @property
    def id(self) -> str:
        return f"{self.protocol}-{self.fault}-{'alone' if self.alone else 'fallback'}"


# A request that outlives the job ends it before any fallback is tried: only the lone variant.
CELLS = [
    Cell(p, f, alone)
    for p, faults in [*((p, FAULTS) for p in MODELS), ("comfyui", BOX_FAULTS)]
    for f in faults
    for alone in (False, True)
    if alone or f != "hang_past_deadline"
]


def _cells() -> Iterator[Any]:
    for cell in CELLS:
        reason = KNOWN.get(cell.id)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(cell, id=cell.id, marks=marks)


def _price(protocol: str, factor: float) -> dict[str, Any]:
    usd = BASE_PRICE[protocol] * factor
    if protocol in ("fal", "together"):
        return {"price_usd_per_mp": usd}
    return {"pricing": {"unit": UNITS[protocol], "usd": usd}}


def _profile(protocol: str, name: str, factor: float, fault: str | None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "name": name,
        "protocol": protocol,
        "models": [MODELS[protocol]],
        "processing_s": [0.01, 0.03],
        **_price(protocol, factor),
    }
    if fault == "price_change":
        jump = {"after_s": PRICE_JUMP_AT_S, "usd": BASE_PRICE[protocol] * factor * PRICE_JUMP}
        profile["price_schedule"] = [jump]
    elif fault is not None:
        profile.update(FAULTS[fault])
    if fault == "preemption" and protocol == "replicate":
        # Hardware-priced: the GPU time a preempted prediction used is billed without an output.
        profile["pricing"] = {"unit": "gpu_second", "usd": BASE_PRICE[protocol] * factor}
    return profile


def _box(name: str, factor: float, fault: str | None) -> dict[str, Any]:
    box: dict[str, Any] = {
        "name": name,
        "models": [BOX_MODEL],
        "usd_per_hour": BOX_USD_PER_HOUR * factor,
        # ~1 s a prompt: a time-billed attempt is cut off after a few expected runs, and a loaded
        # test machine must not make a healthy box look hung.
        "seconds_per_step": 0.05,
        "load_s": 0.05,
        "node_s": 0.005,
    }
    if fault == "price_change":
        jump = {"after_s": PRICE_JUMP_AT_S, "usd_per_hour": BOX_USD_PER_HOUR * factor * PRICE_JUMP}
        box["price_schedule"] = [jump]
    elif fault is not None:
        box.update(BOX_FAULTS[fault])
    return box


def _model(cell: Cell) -> str:
    return BOX_MODEL if cell.protocol == "comfyui" else MODELS[cell.protocol]


def _scenario(cell: Cell) -> Scenario:
    if cell.protocol == "comfyui":
        boxes = [_box("faulty", 1.0, cell.fault)]
        if not cell.alone:
            boxes.append(_box("healthy", FALLBACK_MARKUP, None))
        # A scenario has at least one hosted provider: one that serves another model, never used.
        idle = _profile("fal", "idle", 1.0, None)
        return Scenario.model_validate(
            {"name": f"fault-{cell.id}", "seed": 7, "providers": [idle], "comfyui_boxes": boxes}
        )
    providers = [_profile(cell.protocol, "faulty", 1.0, cell.fault)]
    if not cell.alone:
        providers.append(_profile(cell.protocol, "healthy", FALLBACK_MARKUP, None))
    return Scenario.model_validate({"name": f"fault-{cell.id}", "seed": 7, "providers": providers})


def _spec(cell: Cell) -> JobSpec:
    return JobSpec.model_validate(
        {
            "prompts": ["a headshot"],
            "use_case": "generic",
            "model": _model(cell),
            "size": {"width": 256, "height": 256},
            "deliver": 2,
            "max_candidates": 8,
            "budget_usd": BUDGET_USD,
            "deadline_s": SHORT_DEADLINE_S if cell.fault == "hang_past_deadline" else DEADLINE_S,
            # One request at a time: a request already on the wire when a 429 comes back cannot
            # honour its Retry-After, and the market would count it as if it had ignored it.
            # A price change: the next request after the jump is sent once the jump has happened.
            # A ComfyUI box runs one prompt at a time: under heavy load a second one waiting in its
            # queue still ran past the attempt timeout (the queue wait estimate is one short run).
            "concurrency": 1
            if cell.fault in ("rate_limit", "price_change") or cell.protocol == "comfyui"
            else 2,
            "seed": 1,
        }
    )


def _providers(market: MarketServer, cell: Cell) -> list[Provider]:
    if cell.protocol == "comfyui":
        return [
            box_provider(
                market,
                box,
                BOX_MODEL,
                timeout_s=HANG_TIMEOUT_S if cell.fault in SHORT_TIMEOUT and box.name == "faulty" else 30.0,
            )
            for box in market.scenario.comfyui_boxes
        ]
    model = MODELS[cell.protocol]
    built: list[Provider] = []
    for profile in market.scenario.providers:
        config = market_provider_config(market, profile, model)
        if cell.fault in SHORT_TIMEOUT and profile.name == "faulty":
            config = config.model_copy(update={"timeout_s": HANG_TIMEOUT_S})
        built.append(build_provider(config, api_key=DEMO_API_KEY))
    return built


class _PriceJump(FunnelObserver):
    """Moves the market past its price change once the job has bought its first candidate."""

    def __init__(self, market: MarketServer) -> None:
        self._market = market
        self._jumped = False

    def candidate_scored(self, event: CandidateScored) -> None:
        if not self._jumped:
            self._jumped = True
            self._market.advance(PRICE_JUMP_AT_S)


@dataclass(frozen=True, slots=True)
class Run:
    outcome: FunnelOutcome
    ledger_by_provider: dict[str, float]
    billed_by_provider: dict[str, float]
    unnamed_billed_usd: float
    unnamed_charged_usd: float
    mismatched: list[str]
    before_retry_after: int
    spent_usd: float
    # What a failed comparison prints: every ledger row and every bill, one line each.
    accounts: str = ""


@dataclass(frozen=True, slots=True)
class _Bill:
    provider: str
    request_id: str
    usd: float


async def _boxes_idle(market: MarketServer) -> None:
    """Wait until every box has finished what it runs (a hung prompt the adapter interrupted bills
    when its interrupt lands at the next step), so the GPU bill is complete."""
    for box in market.scenario.comfyui_boxes:
        if box.unreachable is not None:
            continue
        for _ in range(200):
            if market.box(box.name).idle():
                break
            await asyncio.sleep(0.05)


async def _run(cell: Cell, tmp_path: Path, store_url: str | None = None) -> Run:
    store = Store(store_url or f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with MarketServer(_scenario(cell)) as market:
            observer = _PriceJump(market) if cell.fault == "price_change" else None
            outcome = await run_funnel_job(
                _spec(cell),
                _providers(market, cell),
                store=store,
                blobs=BlobStore(tmp_path / "blobs"),
                observer=observer,
            )
            # Everything still running at the provider (a hung request nobody can cancel) finishes
            # and is billed: the bill is compared once there is nothing left to come.
            market.advance(4 * FOREVER_S)
            # One bill: the hosted APIs' log and the boxes' GPU seconds, each by request (prompt) id.
            billing = [_Bill(r.provider, r.request_id, r.usd) for r in market.billing()]
            if cell.protocol == "comfyui":
                await _boxes_idle(market)
                billing += [_Bill(r.box, r.prompt_id, r.usd) for r in market.gpu_billing()]
            stats = market.stats()
        ledger = store.ledger(outcome.job_id)
        spent = store.spent_usd(outcome.job_id)
    finally:
        store.close()
    billed = {record.request_id: record.usd for record in billing}
    charged = {row.provider_request_id: row.charged_usd or 0.0 for row in ledger if row.provider_request_id}
    providers = {row.provider for row in ledger} | {record.provider for record in billing}
    return Run(
        outcome=outcome,
        ledger_by_provider={
            p: math.fsum(row.charged_usd or 0.0 for row in ledger if row.provider == p) for p in providers
        },
        billed_by_provider={p: math.fsum(r.usd for r in billing if r.provider == p) for p in providers},
        # A bill the ledger cannot name (an answer that never came) must be what it charged unnamed.
        unnamed_billed_usd=math.fsum(usd for rid, usd in billed.items() if rid not in charged),
        unnamed_charged_usd=math.fsum(
            row.charged_usd or 0.0 for row in ledger if not row.provider_request_id
        ),
        mismatched=[
            f"{rid}: ledger {usd!r} vs bill {billed.get(str(rid), 0.0)!r}"
            for rid, usd in charged.items()
            if not math.isclose(usd, billed.get(str(rid), 0.0), abs_tol=1e-9)
        ],
        before_retry_after=stats["faulty"].before_retry_after if "faulty" in stats else 0,
        spent_usd=spent,
        accounts="\n".join(
            [
                f"ledger {r.provider} {r.request_id}#{r.attempt} {r.status} charged={r.charged_usd!r} "
                f"id={r.provider_request_id} {r.error_type or ''} {(r.error or '')[:160]}"
                for r in ledger
            ]
            + [f"bill {b.provider} {b.request_id} {b.usd!r}" for b in billing]
        ),
    )


async def _run_all(
    root: Path, cells: list[Cell], store_urls: Mapping[str, str] | None = None
) -> dict[str, Run | BaseException]:
    gate = asyncio.Semaphore(PARALLEL_CELLS)

    async def one(cell: Cell) -> Run | BaseException:
        async with gate:
            folder = root / cell.id
            folder.mkdir()
            try:
                return await _run(cell, folder, (store_urls or {}).get(cell.id))
            except Exception as exc:  # a traceback out of a job is a finding of its own cell
                return exc

    runs = await asyncio.gather(*(one(cell) for cell in cells))
    return {cell.id: run for cell, run in zip(cells, runs, strict=True)}


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Iterator[dict[str, Run | BaseException]]:
    # Only the cells this session selected (``-k``): one cell costs seconds, the matrix minutes.
    chosen: set[str] = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("cell") if callspec is not None else None
        if isinstance(cell, Cell):
            chosen.add(cell.id)
    cells = [cell for cell in CELLS if cell.id in chosen] or CELLS
    with tempfile.TemporaryDirectory() as root:
        yield asyncio.run(_run_all(Path(root), cells))


@pytest.mark.parametrize("cell", list(_cells()))
def test_a_faulty_provider_never_costs_more_than_it_bills(
    cell: Cell, matrix: dict[str, Run | BaseException]
) -> None:
    _check(cell, matrix[cell.id])


# The production store: every fault once, the protocols taken in turn, each cell on a database of
# its own (a shared one would carry pass rates and price drift from cell to cell).
_HOSTED_FAULTS = [fault for fault in FAULTS if fault != "price_change"]  # not a cell that holds (KNOWN)
PG_CELLS = [
    Cell(list(MODELS)[i % len(MODELS)], fault, alone=True) for i, fault in enumerate(_HOSTED_FAULTS)
] + [Cell("comfyui", fault, alone=True) for fault in ("preemption", "hang", "ws_drop", "price_change")]


@pytest.fixture(scope="module")
def pg_matrix(postgres_server: str) -> Iterator[dict[str, Run | BaseException]]:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as root:
        urls = {cell.id: stack.enter_context(scratch_database(postgres_server)) for cell in PG_CELLS}
        yield asyncio.run(_run_all(Path(root), PG_CELLS, urls))


@pytest.mark.parametrize("cell", PG_CELLS, ids=[cell.id for cell in PG_CELLS])
def test_on_postgresql_a_faulty_provider_never_costs_more_than_it_bills(
    cell: Cell, pg_matrix: dict[str, Run | BaseException]
) -> None:
    _check(cell, pg_matrix[cell.id])


def _check(cell: Cell, run: Run | BaseException) -> None:
    """Delivered or a precise reason, spend and bill within the budget, ledger = billing log to the
    cent per provider and per request, and nothing sent before a Retry-After."""
    if isinstance(run, BaseException):
        raise run
    outcome = run.outcome
    assert outcome.status in ("delivered", "partial", "failed")
    if outcome.status != "delivered":
        assert outcome.stop_reason.startswith("delivered "), outcome.stop_reason
        causes = BOX_CAUSES if cell.protocol == "comfyui" else CAUSES
        assert re.search(causes[cell.fault], outcome.stop_reason), outcome.stop_reason
    billed_total = math.fsum(run.billed_by_provider.values())
    assert run.spent_usd <= BUDGET_USD + 1e-12
    assert billed_total <= BUDGET_USD + 1e-12, "the provider billed more than the budget"
    # The ledger equals the billing log: per provider (to the cent and below), and per request.
    for provider, billed in run.billed_by_provider.items():
        assert run.ledger_by_provider.get(provider, 0.0) == pytest.approx(billed, abs=1e-9), (
            f"{provider}\n{run.accounts}"
        )
    assert run.unnamed_charged_usd == pytest.approx(run.unnamed_billed_usd, abs=1e-9), run.accounts
    assert not run.mismatched, run.accounts
    assert run.before_retry_after == 0, "a request reached the provider before its Retry-After"
