from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from imagefunnel.errors import BadOutput, ProviderTimeout, ProviderUnavailable
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
