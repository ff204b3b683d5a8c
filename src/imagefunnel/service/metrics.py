"""Prometheus ``/metrics``, computed from the store at scrape time.

Everything the dashboard counts lives in the store, so every API process answers the same numbers
whichever process ran the jobs. The registry belongs to the app (no process-global state), built
with ``prometheus-client`` (the reference Python client: exposition format and content negotiation
done right).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from imagefunnel.store import Store
from imagefunnel.store.models import CandidateRow, JobRow, LedgerRow
from imagefunnel.store.service_models import EvaluationRow, ServiceJobRow, WebhookDeliveryRow

__all__ = ["StoreCollector", "build_registry"]


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._store.session() as s:
            by_status = s.execute(
                select(JobRow.status, func.count())
                .join(ServiceJobRow, ServiceJobRow.job_id == JobRow.id)
                .group_by(JobRow.status)
            ).all()
            candidates = s.execute(
                select(
                    CandidateRow.provider, func.count(), func.sum(case((CandidateRow.passed, 1), else_=0))
                ).group_by(CandidateRow.provider)
            ).all()
            ledger = s.execute(
                select(
                    LedgerRow.provider,
                    func.sum(func.coalesce(LedgerRow.charged_usd, 0.0)),
                    func.sum(LedgerRow.quoted_usd),
                    func.sum(case((LedgerRow.status == "failed", 1), else_=0)),
                    func.count(),
                    func.avg(case((LedgerRow.status == "succeeded", LedgerRow.latency_s), else_=None)),
                ).group_by(LedgerRow.provider)
            ).all()
            queued_evals = s.scalar(select(func.count()).where(EvaluationRow.status == "queued")) or 0
            pending_hooks = s.scalar(select(func.count()).where(WebhookDeliveryRow.status == "pending")) or 0
        jobs = GaugeMetricFamily("imagefunnel_jobs", "Service jobs by status", labels=["status"])
        for status, n in by_status:
            jobs.add_metric([status], n)
        yield jobs
        depth = GaugeMetricFamily("imagefunnel_queue_depth", "Work waiting for a worker", labels=["queue"])
        depth.add_metric(["jobs"], dict(by_status).get("queued", 0))
        depth.add_metric(["evaluations"], queued_evals)
        depth.add_metric(["webhooks"], pending_hooks)
        yield depth
        total = CounterMetricFamily(
            "imagefunnel_candidates", "Candidates scored", labels=["provider", "passed"]
        )
        rate = GaugeMetricFamily(
            "imagefunnel_pass_rate", "Share of candidates that passed", labels=["provider"]
        )
        for provider, n, passed in candidates:
            total.add_metric([provider, "true"], int(passed or 0))
            total.add_metric([provider, "false"], n - int(passed or 0))
            rate.add_metric([provider], (passed or 0) / n if n else 0.0)
        yield total
        yield rate
        spend = CounterMetricFamily("imagefunnel_spend_usd", "Charged by providers", labels=["provider"])
        quoted = CounterMetricFamily("imagefunnel_quoted_usd", "Quoted before each call", labels=["provider"])
        errors = CounterMetricFamily(
            "imagefunnel_provider_errors", "Failed provider attempts", labels=["provider"]
        )
        attempts = CounterMetricFamily(
            "imagefunnel_provider_attempts", "Provider attempts", labels=["provider"]
        )
        latency = GaugeMetricFamily(
            "imagefunnel_provider_latency_seconds", "Mean latency of successful attempts", labels=["provider"]
        )
        for provider, charged, quote, failed, n, mean_latency in ledger:
            spend.add_metric([provider], float(charged or 0.0))
            quoted.add_metric([provider], float(quote or 0.0))
            errors.add_metric([provider], int(failed or 0))
            attempts.add_metric([provider], int(n))
            latency.add_metric([provider], float(mean_latency or 0.0))
        yield from (spend, quoted, errors, attempts, latency)


def build_registry(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
