from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from imagefunnel.errors import BadOutput, ProviderTimeout, ProviderUnavailable, RateLimited
from imagefunnel.providers.base import GenerationRequest
from imagefunnel.providers.local import LocalWorkerError, LocalWorkerProvider


def png(request: GenerationRequest) -> bytes:
    rng = np.random.default_rng(request.seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (request.height, request.width, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def req(**kw: object) -> GenerationRequest:
    return GenerationRequest(
        **{"request_id": "r1", "model": "local/seg", "prompt": "x", "width": 64, "height": 64, **kw}
    )  # type: ignore[arg-type]


async def test_generates_and_charges_compute_time() -> None:
    provider = LocalWorkerProvider(name="box", models=frozenset({"local/seg"}), work=png, usd_per_hour=3600.0)
    gen = await provider.generate(req())
    assert Image.open(io.BytesIO(gen.image)).size == (64, 64)
    assert gen.content_type == "image/png"
    assert 0 < gen.charged_usd < gen.latency_s + 0.01  # $1 per second of compute here
    quote = await provider.quote(req())
    assert quote.unit_price_usd == pytest.approx(1.0)
    await provider.aclose()
    with pytest.raises(ProviderUnavailable, match="closed"):
        await provider.generate(req())


async def test_worker_failure_and_garbage_are_typed_errors() -> None:
    def boom(_: GenerationRequest) -> bytes:
        raise LocalWorkerError("CUDA out of memory")

    failing = LocalWorkerProvider(name="f", models=frozenset({"local/seg"}), work=boom)
    with pytest.raises(ProviderUnavailable, match="CUDA out of memory"):
        await failing.generate(req())
    garbage = LocalWorkerProvider(name="g", models=frozenset({"local/seg"}), work=lambda r: png(r)[:100])
    with pytest.raises(BadOutput, match="unusable image"):
        await garbage.generate(req())
    await failing.aclose()
    await garbage.aclose()


async def test_slow_worker_times_out() -> None:
    def slow(r: GenerationRequest) -> bytes:
        time.sleep(0.5)
        return png(r)

    provider = LocalWorkerProvider(name="s", models=frozenset({"local/seg"}), work=slow, timeout_s=0.05)
    with pytest.raises(ProviderTimeout):
        await provider.generate(req())
    await provider.aclose()


def _loader(seconds: float, calls: list[str]) -> Callable[[], None]:
    def load() -> None:
        calls.append("load")
        time.sleep(seconds)

    return load


async def test_cold_start_is_measured_and_billed_with_the_first_request() -> None:
    calls: list[str] = []
    provider = LocalWorkerProvider(
        name="cold",
        models=frozenset({"local/seg"}),
        work=png,
        usd_per_hour=3600.0,
        load=_loader(0.05, calls),
        expected_load_s=0.05,
    )
    assert not provider.warm and (await provider.health()).detail.startswith("cold")
    cold_quote = (await provider.quote(req())).usd
    first = await provider.generate(req())
    assert calls == ["load"] and provider.cold_starts == 1 and provider.warm
    assert provider.cold_start_s is not None and provider.cold_start_s >= 0.05
    assert first.charged_usd >= provider.cold_start_s  # $1/s: the load time is on this bill
    second = await provider.generate(req(request_id="r2"))
    assert second.charged_usd < first.charged_usd and calls == ["load"]
    assert (await provider.quote(req())).usd < cold_quote
    await provider.aclose()


async def test_a_cold_worker_that_does_not_serve_cold_sends_requests_elsewhere() -> None:
    calls: list[str] = []
    provider = LocalWorkerProvider(
        name="lazy",
        models=frozenset({"local/seg"}),
        work=png,
        load=_loader(0.1, calls),
        expected_load_s=0.1,
        serve_cold=False,
    )
    with pytest.raises(RateLimited, match="cold") as info:
        await provider.generate(req())
    assert info.value.retry_after_s == pytest.approx(0.1)
    await asyncio.sleep(0.3)  # the load went on in the background
    assert provider.warm and calls == ["load"]
    await provider.generate(req())
    await provider.aclose()


async def test_idle_worker_scales_to_zero_and_a_full_queue_is_saturated() -> None:
    now = [0.0]
    unloads: list[str] = []

    def slow(r: GenerationRequest) -> bytes:
        time.sleep(0.1)
        return png(r)

    provider = LocalWorkerProvider(
        name="q",
        models=frozenset({"local/seg"}),
        work=slow,
        load=lambda: None,
        unload=lambda: unloads.append("unload"),
        idle_unload_s=60.0,
        max_queue=1,
        clock=lambda: now[0],
    )
    await provider.generate(req())
    now[0] += 61.0
    assert not (await provider.health()).detail.startswith("warm")
    results = await asyncio.gather(
        *(provider.generate(req(request_id=f"r{i}")) for i in range(3)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 1 and "saturated" in str(refused[0])  # 1 running + 1 queued, the third refused
    assert provider.cold_starts == 2 and unloads == ["unload"]
    await provider.aclose()
