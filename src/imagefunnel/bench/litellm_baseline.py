"""The external baseline: LiteLLM's Router, with its own strategies and retries, on the same market.

LiteLLM reaches every provider through an OpenAI-compatible images endpoint (``openai/<name>``
deployments). In the simulated benchmark those endpoints are an in-process httpx transport over the
same :class:`~imagefunnel.bench.sim.SimProvider` decisions our router faces, installed as LiteLLM's
``aclient_session``; LiteLLM's own clock (``time.time``, ``datetime.now``: cooldowns, latency
samples) is moved with the virtual loop by time-machine, so its cooldowns and latency routing see
the same seconds the market does.

Configuration is what a LiteLLM user would write: one model group with every
provider as a deployment, ``num_retries`` so a failed call is retried on another deployment,
LiteLLM's default cooldowns, and, for ``cost-based-routing``, each provider's list price at
configuration time put in ``output_cost_per_token`` (the only price field its ranking reads).
LiteLLM cannot see spot prices move or outputs fail a spec: that is the point of the comparison.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.sim import SimProvider, expected_usd
from imagefunnel.bench.simrun import SimSetup, served_by
from imagefunnel.bench.vclock import run_virtual
from imagefunnel.bench.verdicts import VerdictModel
from imagefunnel.bench.workload import Bought, JobTicket, run_workload
from imagefunnel.errors import ProviderError, RateLimited
from imagefunnel.market.engine import Job, Market, Phase
from imagefunnel.providers.base import GenerationRequest

__all__ = ["LITELLM_STRATEGIES", "litellm_available", "run_litellm"]

LITELLM_STRATEGIES = ("simple-shuffle", "cost-based-routing", "latency-based-routing")
_EPOCH = 1_900_000_000.0  # where LiteLLM's wall clock starts in virtual time
_PLACEHOLDER = base64.b64encode(b"\x89PNG\r\n\x1a\nsimulated").decode()
_DRAIN_S = 3600.0


def _import_litellm() -> Any:
    # Without this LiteLLM spends seconds at import trying to download its cost map.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def litellm_available() -> bool:
    try:
        _import_litellm()
        import time_machine  # noqa: F401
    except ImportError:
        return False
    return True


class MarketImagesTransport(httpx.AsyncBaseTransport):
    """``POST http://market/{provider}/v1/images/generations`` answered from the simulated market."""

    def __init__(self, providers: Mapping[str, SimProvider], *, model_ids: Mapping[str, str]) -> None:
        self._providers = providers
        self._model_ids = model_ids
        # Keyed by the request id, which travels as OpenAI's ``user`` field: what each request
        # really asked for (seed included: LiteLLM has no seed parameter for images) and got.
        self.requests: dict[str, GenerationRequest] = {}
        self.bought: dict[str, tuple[str, Job]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/").split("/")[0]
        provider = self._providers.get(name)
        if provider is None or not request.url.path.endswith("/images/generations"):
            return _error(404, "not found", request)
        body = json.loads(await request.aread())
        asked = self.requests.get(str(body.get("user", "")))
        if asked is None:
            return _error(400, "unknown request", request)
        gen = dataclasses.replace(asked, model=self._model_ids[name])
        timeout = (request.extensions.get("timeout") or {}).get("read")
        try:
            async with asyncio.timeout(timeout):
                job = await provider.run(gen)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("simulated read timeout", request=request) from exc
        except RateLimited as exc:
            headers = {"retry-after": str(math.ceil(exc.retry_after_s or 1))}
            return _error(429, str(exc), request, headers=headers)
        except ProviderError as exc:
            return _error(503, str(exc), request)
        if (
            provider.profile.outage_at(provider.market.now_s())
            or provider.market.phase(job) is not Phase.DONE
        ):
            return _error(500, "generation failed", request)
        self.bought[gen.request_id] = (name, job)
        created = int(time.time())
        data = {"created": created, "data": [{"b64_json": _PLACEHOLDER}]}
        return httpx.Response(200, json=data, headers={"x-request-id": job.id}, request=request)


def _error(
    status: int, message: str, request: httpx.Request, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return httpx.Response(status, json=body, headers=headers, request=request)


def _model_list(market: Market, names: list[str], setup: SimSetup) -> list[dict[str, Any]]:
    request = setup.workload.request(0, 0)
    out = []
    for name in names:
        profile = market.scenario.provider(name)
        list_price = expected_usd(profile, profile.price_at(0.0), request)
        out.append(
            {
                "model_name": setup.workload.model,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_key": "sk-bench",
                    "api_base": f"http://market/{name}/v1",
                    # cost-based routing ranks by this only: the per-image list price.
                    "output_cost_per_token": list_price,
                },
                "model_info": {"id": name, "output_cost_per_image": list_price},
            }
        )
    return out


class _LiteLLMBuyer:
    def __init__(self, router: Any, transport: MarketImagesTransport, *, timeout_s: float) -> None:
        self.errors: Counter[str] = Counter()
        self._router = router
        self._transport = transport
        self._timeout_s = timeout_s

    async def buy(self, request: GenerationRequest, ticket: JobTicket) -> Bought | None:
        import openai  # LiteLLM's dependency; its exceptions are all openai.OpenAIError

        self._transport.requests[request.request_id] = request
        try:
            await self._router.aimage_generation(
                model=request.model,
                prompt=request.prompt,
                size=f"{request.width}x{request.height}",
                user=request.request_id,
                timeout=max(0.001, min(self._timeout_s, ticket.deadline - asyncio.get_running_loop().time())),
            )
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            # Every LiteLLM API exception derives from openai.OpenAIError: all retries failed.
            self.errors[type(exc).__name__] += 1
            return None
        found = self._transport.bought.get(request.request_id)
        if found is None:
            return None
        name, job = found
        return Bought(name, request.model, job.id)

    def observe(self, bought: Bought, use_case: str, passed: bool) -> None:
        return None  # LiteLLM has no notion of an output that fails a spec


@contextlib.contextmanager
def _litellm_session(transport: MarketImagesTransport) -> Iterator[Any]:
    litellm = _import_litellm()
    previous = litellm.aclient_session
    level = logging.getLogger("LiteLLM").level
    litellm.aclient_session = httpx.AsyncClient(transport=transport)
    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield litellm
    finally:
        litellm.aclient_session = previous
        logging.getLogger("LiteLLM").setLevel(level)


def run_litellm(strategy: str, setup: SimSetup, *, timeout_s: float = 60.0) -> PolicyResult:
    """Run the workload with LiteLLM's Router using ``strategy``, in virtual time."""
    import time_machine

    started = time.perf_counter()
    with time_machine.travel(_EPOCH, tick=False) as traveller:
        result = run_virtual(
            _run(strategy, setup, timeout_s),
            on_advance=lambda now: traveller.move_to(_EPOCH + now, tick=False),
        )
    return PolicyResult(
        name=f"litellm:{strategy}",
        jobs=result.jobs,
        spend_usd=result.spend_usd,
        billed_requests=result.billed_requests,
        spend_by_provider=result.spend_by_provider,
        wall_s=time.perf_counter() - started,
        before_retry_after=result.before_retry_after,
    )


async def _run(strategy: str, setup: SimSetup, timeout_s: float) -> PolicyResult:
    loop = asyncio.get_running_loop()
    market = Market(setup.scenario, clock=loop.time)
    names = served_by(setup.scenario)
    providers = {name: SimProvider(market, name) for name in names}
    model_ids = {name: market.scenario.provider(name).models[0] for name in names}
    transport = MarketImagesTransport(providers, model_ids=model_ids)
    with _litellm_session(transport) as litellm:
        router = litellm.Router(
            model_list=_model_list(market, names, setup),
            routing_strategy=strategy,
            num_retries=len(names) - 1,
            timeout=timeout_s,
        )
        verdicts = VerdictModel(setup.calibration, seed=setup.seed)

        def judge(bought: Bought) -> bool:
            return verdicts.passed(providers[bought.provider].jobs[bought.provider_request_id].truth)

        jobs = await run_workload(
            setup.workload, _LiteLLMBuyer(router, transport, timeout_s=timeout_s), judge
        )
    market.advance(_DRAIN_S)
    billing = market.billing()
    by_provider: dict[str, float] = defaultdict(float)
    for record in billing:
        by_provider[record.provider] += record.usd
    return PolicyResult(
        name=strategy,
        jobs=tuple(jobs),
        spend_usd=math.fsum(record.usd for record in billing),
        billed_requests=len(billing),
        spend_by_provider=dict(by_provider),
        before_retry_after=sum(stats.before_retry_after for stats in market.stats().values()),
    )
