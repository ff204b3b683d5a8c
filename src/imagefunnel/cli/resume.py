"""``imagefunnel resume``: carry on a job from its store after a crash."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from imagefunnel.cli.quote import print_quote_check
from imagefunnel.cli.runner import JobSource, run_job, stored_spec
from imagefunnel.cli.summary import print_summary
from imagefunnel.funnel import JobResult


def resume_job(
    console: Console, *, job_id: str, out_dir: Path, providers_path: Path | None, scenario: str | None
) -> JobResult:
    from imagefunnel.cli.demo import default_scenario

    spec = stored_spec(out_dir, job_id)
    scenario = scenario or default_scenario(spec)
    source = JobSource(out_dir=out_dir, providers_path=providers_path, scenario=scenario)
    console.print(f"[bold]resuming[/] job {job_id} ({spec.name}): {spec.deliver} to deliver")
    if providers_path is not None:
        from imagefunnel.providers.config import build_provider, load_providers_file

        providers = [build_provider(cfg) for cfg in load_providers_file(providers_path).providers]
        outputs = run_job(spec, providers, source=source, console=console, resume_job_id=job_id)
    else:
        from imagefunnel.cli.demo import market_providers
        from imagefunnel.market.server import MarketServer

        with MarketServer(scenario) as market:
            providers = market_providers(market, spec.model)
            outputs = run_job(spec, providers, source=source, console=console, resume_job_id=job_id)
    print_summary(console, outputs.result, wall_s=outputs.wall_s)
    if outputs.quote is not None:
        print_quote_check(console, outputs.quote)
    console.print(f"report: {outputs.report}\nresults: {outputs.results_json}", markup=False, highlight=False)
    return outputs.result
