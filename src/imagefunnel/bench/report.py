"""The routing benchmark's report as Markdown (for ``docs/benchmarks.md``) and its target checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from imagefunnel.bench.doc_blocks import write_marked_block
from imagefunnel.bench.results import PolicyResult
from imagefunnel.bench.routing import DEFAULT_POLICY, RoutingReport
from imagefunnel.bench.simrun import BLIND
from imagefunnel.bench.verdicts import CLEAN

__all__ = ["Target", "markdown", "signed_pct", "targets", "write_section"]

_DEFAULT = DEFAULT_POLICY
# The default policy's job p99 may grow by this much over the same scenario without its faults.
_P99_VS_FAULT_FREE = 1.5
_START = "<!-- bench:routing:{scenario}:start -->"
_END = "<!-- bench:routing:{scenario}:end -->"


@dataclass(frozen=True, slots=True)
class Target:
    what: str
    limit: str
    measured: float
    met: bool

    @property
    def measured_text(self) -> str:
        return "n/a" if math.isnan(self.measured) else f"{self.measured:.3f}"


def targets(report: RoutingReport) -> list[Target]:
    out = []
    for what, other, limit in (
        ("cost per delivered vs `single`", "single", 0.30),
        ("cost per delivered vs `oracle`", "oracle", 1.05),
        ("cost per delivered vs `cheapest_per_call`", "cheapest_per_call", 0.85),
    ):
        ratio = report.ratio(_DEFAULT, other)
        out.append(Target(what, f"≤ {limit:.2f}×", ratio, ratio <= limit))
    best = report.best_litellm
    if best is not None:
        ratio = report.ratio(_DEFAULT, best.name)
        out.append(
            Target(f"cost per delivered vs LiteLLM's best (`{best.name}`)", "≤ 0.85×", ratio, ratio <= 0.85)
        )
    bound = report.to_bound(_DEFAULT)
    out.append(Target("cost per delivered vs the lower bound", "≤ 1.05×", bound, bound <= 1.05))
    mine = report.result(_DEFAULT)
    if mine is not None:
        drift = mine.ledger_vs_bill_pct
        out.append(Target("ledger vs the market's billing log (%)", "0 %", drift, abs(drift) < 0.05))
        out.append(Target("failed requests (%)", "≤ 0.5 %", mine.failed_pct, mine.failed_pct <= 0.5))
        early = mine.before_retry_after
        out.append(Target("requests sent before a 429's Retry-After", "0", early, early == 0))
        clean = report.fault_free
        if clean is not None:
            faulty_p99, clean_p99 = mine.job_seconds(99), clean.job_seconds(99)
            ratio = faulty_p99 / clean_p99 if clean_p99 > 0 else math.nan
            out.append(
                Target(
                    f"job p99 vs the same scenario without faults ({faulty_p99:.0f} s vs {clean_p99:.0f} s)",
                    f"≤ {_P99_VS_FAULT_FREE:.2f}×",
                    ratio,
                    ratio <= _P99_VS_FAULT_FREE,
                )
            )
    if report.decisions is not None:
        p99_ms = report.decisions.p99_us / 1000
        out.append(Target("router decision p99 (ms), 1,000 in flight", "< 1 ms", p99_ms, p99_ms < 1.0))
    return out


def _row(result: PolicyResult, report: RoutingReport) -> str:
    single, oracle = report.ratio(result.name, "single"), report.ratio(result.name, "oracle")
    return (
        f"| `{result.name}` | ${result.cost_per_delivered:.4f} | {single:.3f} | {oracle:.3f} "
        f"| {report.to_bound(result.name):.3f} | {signed_pct(result.ledger_vs_bill_pct)} "
        f"| {result.failed_pct:.2f} | {result.job_seconds(50):.0f} | {result.job_seconds(99):.0f} "
        f"| {result.candidates_per_delivered:.2f} | {result.delivered:,} | ${result.spend_usd:,.2f} "
        f"| {result.before_retry_after:,} |"
    )


def signed_pct(value: float) -> str:
    """A signed percentage with two decimals, or a dash when there is nothing to compare."""
    return "–" if math.isnan(value) else f"{value:+.2f}"


def _spend_split(result: PolicyResult) -> str:
    total = result.spend_usd or 1.0
    parts = sorted(result.spend_by_provider.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {100 * usd / total:.0f} %" for name, usd in parts)


def markdown(report: RoutingReport) -> str:
    w, d, cal = report.workload, report.dispersion, report.calibration
    lines = [
        _START.format(scenario=report.scenario),
        f"### Scenario `{report.scenario}`",
        "",
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Machine: {report.machine}." if report.machine else "",
        "",
        f"Workload: {w.jobs} jobs × {w.deliver} deliverables ({w.width}×{w.height}), one job every "
        f"{w.interarrival_s:g} s, {w.concurrency} requests in flight per job, deadline {w.deadline_s:g} s "
        f"(scenario seconds, virtual clock). Market dispersion over the run: `{report.single_provider}` "
        f"lists ${d.single_usd_per_mp:.4f}/MP; the cheapest provider at any moment averages "
        f"${d.cheapest_usd_per_mp:.4f}/MP.",
        "",
        "| policy | $/delivered | × single | × oracle | × bound | ledger vs bill % | failed req % "
        "| job p50 s | job p99 s | candidates/delivered | delivered | spend | sent before Retry-After |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(r, report) for r in (*report.policies, *report.litellm)),
        "",
        _bound_line(report),
        "",
        "Where the money went: "
        + "; ".join(f"`{r.name}`: {_spend_split(r)}" for r in (*report.policies, *report.litellm)),
        "",
    ]
    if report.fault_free is not None:
        lines += [_fault_free_line(report), ""]
    if report.decisions is not None:
        dl = report.decisions
        lines.append(
            f"Router decision latency ({dl.decisions:,} decisions, {dl.max_in_flight:,} requests in flight): "
            f"p50 {dl.p50_us:.0f} µs, p99 {dl.p99_us:.0f} µs."
        )
        lines.append("")
    labels = sorted(cal.samples, key=lambda label: (label != CLEAN, label))
    lines.append(
        f"Scorer calibration ({cal.width}×{cal.height}, {cal.seconds:.0f} s): "
        + ", ".join(f"{label} {cal.rejected[label]}/{cal.samples[label]} rejected" for label in labels)
        + "."
    )
    lines += ["", "| target | limit | measured | met |", "|---|---|---:|---|"]
    lines += [
        f"| {t.what} | {t.limit} | {t.measured_text} | {'yes' if t.met else '**no**'} |"
        for t in targets(report)
    ]
    lines += _capacity_lines(report)
    if report.e2e:
        lines += _e2e_lines(report)
    lines.append(_END.format(scenario=report.scenario))
    return "\n".join(line for line in lines if line is not None) + "\n"


def _bound_line(report: RoutingReport) -> str:
    w = report.workload
    short = [r for r in (*report.policies, *report.litellm) if r.delivered < w.jobs * w.deliver]
    caveat = (
        " It bounds policies that deliver every image: "
        + ", ".join(f"`{r.name}` delivered {r.delivered:,} of {w.jobs * w.deliver:,}" for r in short)
        + "."
        if short
        else ""
    )
    return (
        f"Lower bound: ${report.lower_bound_usd:.4f} per delivered image, a linear program over the "
        "market's hindsight: the jobs share every provider's capacity (its slots and rate limit), each "
        "job buys at the lowest list price / true pass rate any provider offers while it is up, from the "
        "job's arrival until the last moment a request there can still finish by the job's deadline, "
        "with no overshoot; the price floor, the same without capacity or timing, is "
        f"${report.price_floor_usd:.4f}.{caveat} `oracle` is the greedy hindsight policy, a baseline "
        "that buys at once and pays overshoot like any policy. Ledger vs bill: the router's own books "
        "against the market's billing log."
    )


def _fault_free_line(report: RoutingReport) -> str:
    clean = report.fault_free
    assert clean is not None
    return (
        f"Without faults: `{clean.name}` on the same scenario and workload (same seed) with its faults "
        "stripped (fault windows, outages, steady 5xx, failure and garbage rates; prices, latencies, "
        f"rate limits and defect rates kept): job p50 {clean.job_seconds(50):.0f} s, "
        f"job p99 s (no faults) {clean.job_seconds(99):.0f}, ${clean.cost_per_delivered:.4f} per "
        f"delivered image, {clean.failed_pct:.2f} % failed requests."
    )


def _capacity_lines(report: RoutingReport) -> list[str]:
    """The router with its capacity model against the same router blind to capacity (only in a
    scenario with a capacity-limited provider, where the blind run exists)."""
    new, old = report.result(_DEFAULT), report.result(BLIND)
    if new is None or old is None:
        return []
    deadline = report.workload.deadline_s
    misses_new, misses_old = new.deadline_misses(deadline), old.deadline_misses(deadline)
    rows = []
    for label, r, misses in (
        ("capacity-blind (before)", old, misses_old),
        ("capacity-aware", new, misses_new),
    ):
        rows.append(
            f"| `{r.name}` {label} | ${r.cost_per_delivered:.4f} | {misses} of {len(r.jobs)} "
            f"| {r.job_seconds(95):.0f} | {r.delivered:,} | ${r.spend_usd:,.2f} | {_spend_split(r)} |"
        )
    miss_ratio = f"{misses_new / misses_old:.3f}" if misses_old else "–"
    return [
        "",
        f"Capacity (deadline {deadline:g} s): the default router against the same router blind to "
        "capacity (queue wait not in the expected latency, no admission by expected completion).",
        "",
        "| router | $/delivered | deadline misses | job p95 s | delivered | spend | where the money went |",
        "|---|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Aware / blind: cost per delivered image {report.ratio(_DEFAULT, BLIND):.3f}×, deadline misses "
        f"{miss_ratio}×, job p95 {new.job_seconds(95) / old.job_seconds(95):.3f}×.",
    ]


def _e2e_lines(report: RoutingReport) -> list[str]:
    lines = [
        "",
        "End-to-end slice over HTTP (real adapters, real rendering and scoring, real funnel) next to the "
        "same slice simulated:",
        "",
        "| policy | run | $/delivered | candidates/delivered | delivered | spend |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for http, sim in report.e2e:
        for label, r in (("HTTP", http), ("simulated", sim)):
            lines.append(
                f"| `{sim.name}` | {label} | ${r.cost_per_delivered:.4f} | {r.candidates_per_delivered:.2f} "
                f"| {r.delivered} | ${r.spend_usd:.3f} |"
            )
    return lines


def write_section(path: Path, section: str, *, scenario: str) -> None:
    """Replace this scenario's generated block in ``path`` (or add it to '## Routing')."""
    start, end = _START.format(scenario=scenario), _END.format(scenario=scenario)
    write_marked_block(path, start=start, end=end, block=section, heading="## Routing")
