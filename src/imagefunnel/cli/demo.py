"""``imagefunnel demo`` and ``imagefunnel run``: wire a spec to providers (real or emulated) and run it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console

from imagefunnel.cli.runner import RunOutputs, run_job
from imagefunnel.cli.summary import print_summary
from imagefunnel.funnel import JobResult
from imagefunnel.market.scenario import ProviderProfile
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Provider
from imagefunnel.providers.config import PriceConfig, ProviderConfig, build_provider, load_providers_file
from imagefunnel.spec import JobSpec, load_spec, parse_spec

DEMO_API_KEY = "demo-key"  # the emulated market checks that a key is sent, not which one


def demo_spec() -> JobSpec:
    text = (resources.files("imagefunnel.spec") / "examples" / "headshot-demo.yaml").read_text(
        encoding="utf-8"
    )
    return parse_spec(text, source="headshot-demo.yaml")


def market_providers(market: MarketServer, model: str) -> list[Provider]:
    """One adapter, of the profile's protocol, per provider of the scenario that serves ``model``."""
    return [
        _market_provider(market, profile, model)
        for profile in market.scenario.providers
        if model in profile.models
    ]


def _market_provider(market: MarketServer, profile: ProviderProfile, model: str) -> Provider:
    base = market.base_url(profile.name)
    # OpenAI-style adapters take the API root with its version, as the official clients do.
    url = f"{base}/v1" if profile.protocol in ("openai", "together") else base
    config = ProviderConfig(
        name=profile.name,
        protocol=profile.protocol,
        base_url=url,
        models=[model],
        timeout_s=30.0,
        poll_interval_s=0.05,
        # fal publishes its prices; for the others a user writes the list price, here the scenario's.
        price=None if profile.protocol == "fal" else _list_price(profile),
    )
    return build_provider(config, api_key=DEMO_API_KEY)


def _list_price(profile: ProviderProfile) -> PriceConfig:
    pricing = profile.pricing
    return PriceConfig.model_validate(
        {
            "unit": profile.price_unit,
            "usd": profile.price_at(0.0),
            "expected_s": sum(profile.processing_s) / 2,  # GPU time is the processing, not the queue
            "input_usd": pricing.input_usd if pricing is not None else 0.0,
        }
    )


@dataclass(frozen=True, slots=True)
class DefectCatch:
    """How the scorer did against the market's hidden labels (the demo can peek; scorers cannot)."""

    defective: int
    caught: int
    clean: int
    false_rejects: int


def defect_catch(result: JobResult, market: MarketServer) -> DefectCatch:
    defective = caught = clean = false_rejects = 0
    for cand in result.candidates:
        truth = market.truth(cand.provider_request_id)
        if truth.clean and not truth.garbage:
            clean += 1
            # A duplicate is a correct rejection even when the image is clean.
            false_rejects += not cand.passed and all(
                d.dimension != "duplicate" for d in cand.dimensions if not d.passed
            )
        else:
            defective += 1
            caught += not cand.passed
    return DefectCatch(defective, caught, clean, false_rejects)


@contextmanager
def _market(scenario: str) -> Iterator[MarketServer]:
    with MarketServer(scenario) as market:
        yield market


def _print_outputs(console: Console, outputs: RunOutputs) -> None:
    print_summary(console, outputs.result, wall_s=outputs.wall_s)
    console.print(f"report: {outputs.report}\nresults: {outputs.results_json}")


def run_demo(
    console: Console, *, out_dir: Path, deliver: int | None, scenario: str, seed: int | None
) -> None:
    spec = demo_spec()
    updates: dict[str, object] = {}
    if deliver is not None:
        updates.update(deliver=deliver, max_candidates=max(spec.candidate_cap, 5 * deliver))
    if seed is not None:
        updates["seed"] = seed
    spec = JobSpec.model_validate({**spec.model_dump(), **updates})
    console.print(
        f"[bold]imagefunnel demo[/]: {spec.deliver} headshots from the emulated market '{scenario}'"
    )
    with _market(scenario) as market:
        outputs = run_job(spec, market_providers(market, spec.model), out_dir=out_dir, console=console)
        catch = defect_catch(outputs.result, market)
    _print_outputs(console, outputs)
    console.print(
        f"scorer vs hidden labels: caught {catch.caught}/{catch.defective} injected defects, "
        f"{catch.false_rejects}/{catch.clean} clean candidates rejected"
    )


def run_spec(
    console: Console, *, spec_path: Path, providers_path: Path | None, scenario: str, out_dir: Path
) -> None:
    spec = load_spec(spec_path)
    if providers_path is not None:
        providers = [build_provider(cfg) for cfg in load_providers_file(providers_path).providers]
        _print_outputs(console, run_job(spec, providers, out_dir=out_dir, console=console))
        return
    with _market(scenario) as market:
        outputs = run_job(spec, market_providers(market, spec.model), out_dir=out_dir, console=console)
    _print_outputs(console, outputs)
