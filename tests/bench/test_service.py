"""``imagefunnel bench service``: the paired overhead figures and the section it writes."""

from __future__ import annotations

import pytest

from imagefunnel.bench.service import (
    ConcurrencyRow,
    PairedOverhead,
    ServiceBench,
    _Local,
    _Timed,
    markdown,
    paired_overhead,
    run_service_bench,
)


def _timed(latency: float, decode: float, score: float, total: float) -> _Timed:
    server = {"read": 0.5, "decode": decode, "score": score, "store": 1.0, "total": total}
    return _Timed(latency, server, cpu_ms=latency / 2)


def test_overhead_is_latency_beyond_the_servers_own_scoring_per_request() -> None:
    timed = [_timed(110, 2, 100, 105), _timed(214, 2, 200, 206), _timed(160, 3, 150, 156)]
    summary = paired_overhead([_Local(t, t / 2 - 1) for t in (101, 199, 150)], timed)
    assert summary.pairs == 3
    assert summary.overhead_p50_ms == pytest.approx(8.0)  # 8, 12, 7
    assert summary.overhead_p99_ms == pytest.approx(12.0)
    assert summary.handler_p50_ms == pytest.approx(3.0)  # 3, 4, 3
    assert summary.paired_p50_ms == pytest.approx(10.0)  # 9, 15, 10
    assert summary.scoring_p50_ms == pytest.approx(153.0)
    assert summary.store_p50_ms == pytest.approx(1.0)
    assert summary.cpu_p50_ms == pytest.approx(6.0)  # 5.5, 8.5, 6


def _bench(overhead: float) -> ServiceBench:
    return ServiceBench(
        image="64x64 JPEG (1 KiB), use case generic",
        in_process_p50_ms=100.0,
        in_process_p99_ms=130.0,
        rows=(ConcurrencyRow(1, 4, 9.0, 140.0, 150.0),),
        first_event_ms=(300.0, 400.0),
        paired=PairedOverhead(4, 100.0, overhead, overhead + 3, 2.0, 1.0, overhead + 1, overhead + 9, 3.0),
        load="1.0, 1.0, 1.0",
        command="imagefunnel bench service",
    )


def test_the_target_is_judged_on_the_paired_overhead_not_the_side_by_side_medians() -> None:
    met = markdown(_bench(6.5))
    assert "**6.5 ms p50** (target ≤ 10 ms: met;" in met
    assert "one-client p50 minus that p50: 40.0 ms" in met  # kept, but not what is judged
    assert "(target ≤ 10 ms: not met;" in markdown(_bench(10.5))


@pytest.mark.slow  # a real server, market and job: about 20 s on 2 cores
def test_a_small_run_measures_every_part() -> None:
    bench = run_service_bench(concurrency=(1, 2), requests=2, size=64, jobs=1, pairs=4, in_process_runs=2)
    assert [(r.clients, r.requests) for r in bench.rows] == [(1, 2), (2, 4)]
    assert bench.paired.pairs == 4 and len(bench.first_event_ms) == 1
    # The client's wait encloses the server's scoring, and the route's time encloses none of it.
    assert 0 < bench.paired.handler_p50_ms < bench.paired.overhead_p50_ms
    assert "| 2 | 4 |" in markdown(bench)
