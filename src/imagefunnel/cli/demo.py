"""``imagefunnel demo`` and ``imagefunnel run``: wire a spec to providers (real or emulated) and run it."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rich.console import Console

from imagefunnel.cli.quote import load_given_quote, market_latencies, print_quote_check, start_quote
from imagefunnel.cli.runner import BLOBS_DIR, STORE_FILE, JobSource, RunOutputs, open_store, run_job
from imagefunnel.cli.summary import print_summary
from imagefunnel.delivery import DELIVERED_DIR
from imagefunnel.errors import ImageFunnelError
from imagefunnel.funnel import JobResult
from imagefunnel.funnel.result import CandidateResult
from imagefunnel.market.cutout_profile import CutoutApiProfile
from imagefunnel.market.scenario import ProviderProfile, SelfHostedBox
from imagefunnel.market.server import MarketServer
from imagefunnel.providers.base import Provider
from imagefunnel.providers.comfyui import ComfyUIProvider
from imagefunnel.providers.comfyui_settings import ComfyUISettings
from imagefunnel.providers.config import PriceConfig, ProviderConfig, build_provider, load_providers_file
from imagefunnel.providers.segmentation import BACKGROUND_REMOVAL_MODEL, local_cutout_provider
from imagefunnel.spec import JobSpec, load_spec, parse_spec
from imagefunnel.spec.offer import check_offer

DEMO_API_KEY = "demo-key"  # the emulated market checks that a key is sent, not which one
# fal's endpoint that takes a subject photo (``image_url``) next to a FLUX text-to-image endpoint.
_FAL_REFERENCE_ENDPOINT = "{model}/image-to-image"
# The market a job runs on when none is named: the headshot market, or for background removal the
# one whose hosted cutout APIs compete with the self-hosted remover.
DEFAULT_SCENARIO, BG_REMOVAL_SCENARIO = "demo", "bg-removal"
# The self-hosted background remover that runs next to any market (it is this machine, not an API).
LOCAL_CUTOUT = "local-cutout"


def demo_spec() -> JobSpec:
    """The demo job; its reference photos (package data) resolve against the spec's own folder."""
    folder = resources.files("imagefunnel.spec") / "examples"
    text = (folder / "headshot-demo.yaml").read_text(encoding="utf-8")
    return parse_spec(text, source="headshot-demo.yaml", base_dir=Path(str(folder)))


def default_scenario(spec: JobSpec) -> str:
    """The emulated market for ``spec`` when the command line names none."""
    return BG_REMOVAL_SCENARIO if spec.model == BACKGROUND_REMOVAL_MODEL else DEFAULT_SCENARIO


def market_providers(market: MarketServer, model: str) -> list[Provider]:
    """One adapter, of the profile's protocol, per provider of the scenario that serves ``model``,
    and a ComfyUI adapter per self-hosted box of the scenario that serves it. For background
    removal: the self-hosted remover (this machine's segmentation model) and a remove.bg-protocol
    adapter per cutout API of the scenario, so the router weighs one against the others."""
    if model == BACKGROUND_REMOVAL_MODEL:
        return [local_cutout_provider(name=LOCAL_CUTOUT), *map(_cutout_provider, _cutout_configs(market))]
    hosted = [
        _market_provider(market, profile, model)
        for profile in market.scenario.providers
        if model in profile.models
    ]
    boxes = [box_provider(market, box, model) for box in market.scenario.comfyui_boxes if model in box.models]
    return hosted + boxes


def market_offer(market: MarketServer) -> dict[str, set[str]]:
    """Every provider and self-hosted box of the market's scenario, with the models each serves."""
    offer = {profile.name: set(profile.models) for profile in market.scenario.providers}
    offer.update({box.name: set(box.models) for box in market.scenario.comfyui_boxes})
    offer.update({api.name: {BACKGROUND_REMOVAL_MODEL} for api in market.scenario.cutout_apis})
    offer[LOCAL_CUTOUT] = {BACKGROUND_REMOVAL_MODEL}
    return offer


def _cutout_configs(market: MarketServer) -> list[ProviderConfig]:
    return [cutout_provider_config(market, api) for api in market.scenario.cutout_apis]


def _cutout_provider(config: ProviderConfig) -> Provider:
    return build_provider(config, api_key=DEMO_API_KEY)


def cutout_provider_config(market: MarketServer, api: CutoutApiProfile) -> ProviderConfig:
    """The providers-file entry a user would write for one of the market's cutout APIs."""
    return ProviderConfig(
        name=api.name,
        protocol="removebg",
        base_url=market.base_url(api.name),
        models=[BACKGROUND_REMOVAL_MODEL],
        timeout_s=30.0,
        price=PriceConfig(unit="image", usd=api.usd_per_image),
    )


def _market_provider(market: MarketServer, profile: ProviderProfile, model: str) -> Provider:
    return build_provider(market_provider_config(market, profile, model), api_key=DEMO_API_KEY)


def market_provider_config(market: MarketServer, profile: ProviderProfile, model: str) -> ProviderConfig:
    """The providers-file entry a user would write for one hosted provider of the market."""
    base = market.base_url(profile.name)
    # OpenAI-style adapters take the API root with its version, as the official clients do.
    url = f"{base}/v1" if profile.protocol in ("openai", "together") else base
    fal = profile.protocol == "fal"
    return ProviderConfig(
        name=profile.name,
        protocol=profile.protocol,
        base_url=url,
        models=[model],
        timeout_s=30.0,
        poll_interval_s=0.05,
        # fal publishes its prices; for the others a user writes the list price, here the scenario's.
        price=None if fal else _list_price(profile),
        reference_endpoint=_FAL_REFERENCE_ENDPOINT.format(model=model) if fal else None,
    )


def box_settings(box: SelfHostedBox) -> ComfyUISettings:
    """What the box's owner configures (its checkpoint, its measured speed, its list $/hour)."""
    return ComfyUISettings(
        usd_per_hour=box.price_at(0.0),
        checkpoint=box.checkpoints[0],
        seconds_per_step=box.seconds_per_step,
    )


def box_provider(
    market: MarketServer, box: SelfHostedBox, model: str, *, timeout_s: float = 30.0
) -> Provider:
    """The ComfyUI adapter of one self-hosted box of the market."""
    # As a providers file would configure it, but the $/hour is the spot price in force, which a
    # cloud's spot-price API tells the owner (a providers file can only give a fixed list price)
    # and which the emulated box reports.
    settings = box_settings(box)
    return ComfyUIProvider(
        name=box.name,
        base_url=market.base_url(box.name),
        usd_per_hour=market.box(box.name).usd_per_hour,
        model=model,
        workflow=settings.workflow,
        img2img_workflow=settings.img2img_workflow,
        sampler=settings.sampler(),
        seconds_per_step=settings.seconds_per_step,
        timeout_s=timeout_s,
        poll_interval_s=0.05,
    )


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
    """How the scorer did against the market's hidden labels (the demo can peek; scorers cannot).

    A candidate counts as caught when a quality dimension rejected it: a duplicate rejection says
    nothing of the scorer, so it neither catches a defect nor falsely rejects a clean image.
    ``by_label`` holds (caught, seen) per hidden label (a defect kind or ``identity_drift``).
    """

    defective: int
    caught: int
    clean: int
    false_rejects: int
    by_label: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def line(self) -> str:
        kinds = ", ".join(f"{label} {c}/{n}" for label, (c, n) in sorted(self.by_label.items()))
        detail = f" ({kinds})" if kinds else ""
        return (
            f"scorer vs hidden labels: caught {self.caught}/{self.defective} injected defects{detail}, "
            f"{self.false_rejects}/{self.clean} clean candidates rejected"
        )


def _rejected_on_quality(cand: CandidateResult) -> bool:
    return any(not d.passed and d.dimension != "duplicate" for d in cand.dimensions)


def defect_catch(result: JobResult, market: MarketServer) -> DefectCatch:
    defective = caught = clean = false_rejects = 0
    seen: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for cand in result.candidates:
        truth = market.truth(cand.provider_request_id)
        rejected = _rejected_on_quality(cand)
        if truth.clean and not truth.garbage:
            clean += 1
            false_rejects += rejected
            continue
        defective += 1
        caught += rejected
        for label in truth.labels:
            seen[label] += 1
            hits[label] += rejected
    by_label = {label: (hits[label], seen[label]) for label in seen}
    return DefectCatch(defective, caught, clean, false_rejects, by_label)


@contextmanager
def _market(scenario: str) -> Iterator[MarketServer]:
    with MarketServer(scenario) as market:  # at the scenario's own pace
        yield market


def _print_outputs(console: Console, outputs: RunOutputs) -> None:
    print_summary(console, outputs.result, wall_s=outputs.wall_s)
    if outputs.quote is not None:
        print_quote_check(console, outputs.quote)
    delivered = outputs.results_json.parent / DELIVERED_DIR
    console.print(
        f"delivered: {delivered}/ ({outputs.result.delivered} images, best first)\n"
        f"report: {outputs.report}\nresults: {outputs.results_json}",
        markup=False,
        highlight=False,
    )


# SQLite's own files next to the store, left by a journal or a crash.
_STORE_SIDECARS = ("-journal", "-wal", "-shm")


def fresh_demo_state(out_dir: Path, *, demo_name: str) -> bool:
    """Remove the store and blobs a previous demo left in ``out_dir``, so that pass rates learned
    by an earlier run do not steer this one (the same seed gives the same job). Only the files
    imagefunnel writes there go, and only when every job in that store is a demo job: a folder that
    holds another job's store is refused rather than wiped. True when something was removed."""
    db = out_dir / STORE_FILE
    blobs = out_dir / BLOBS_DIR
    if not db.exists():
        return False
    store = open_store(out_dir)
    try:
        others = sorted({job.name for job in store.jobs()} - {demo_name})
    finally:
        store.close()
    if others:
        raise ImageFunnelError(
            f"{db} holds jobs other than the demo's ({', '.join(others)}); "
            "give the demo another --out, or --keep-state to run it on that store"
        )
    for path in (db, *(db.with_name(db.name + suffix) for suffix in _STORE_SIDECARS)):
        path.unlink(missing_ok=True)
    if blobs.is_dir():
        shutil.rmtree(blobs)
    return True


def run_demo(
    console: Console,
    *,
    out_dir: Path,
    deliver: int | None,
    scenario: str,
    seed: int | None,
    keep_state: bool = False,
) -> JobResult:
    spec = demo_spec()
    updates: dict[str, object] = {}
    if deliver is not None:
        updates.update(deliver=deliver, max_candidates=max(spec.candidate_cap, 5 * deliver))
    if seed is not None:
        updates["seed"] = seed
    spec = JobSpec.model_validate({**spec.model_dump(), **updates})
    subject = f" of the subject in {len(spec.references)} reference photos" if spec.references else ""
    console.print(
        f"[bold]imagefunnel demo[/]: {spec.deliver} headshots{subject} from the emulated market '{scenario}'"
    )
    if not keep_state and fresh_demo_state(out_dir, demo_name=spec.name):
        console.print(
            f"fresh store: removed the previous demo's {STORE_FILE} and {BLOBS_DIR}/ in {out_dir} "
            "(--keep-state keeps them)",
            markup=False,
            highlight=False,
        )
    source = JobSource(out_dir=out_dir, scenario=scenario)
    with _market(scenario) as market:
        check_offer(spec, market_offer(market))
        quote = start_quote(
            spec,
            lambda: market_providers(market, spec.model),
            out_dir=out_dir,
            latencies=market_latencies(market),
        )
        outputs = run_job(
            spec, market_providers(market, spec.model), source=source, console=console, quote=quote
        )
        catch = defect_catch(outputs.result, market)
    _print_outputs(console, outputs)
    console.print(catch.line())
    return outputs.result


def run_spec(
    console: Console,
    *,
    spec_path: Path,
    providers_path: Path | None,
    scenario: str | None,
    out_dir: Path,
    quote_path: Path | None = None,
    quote: bool = True,
) -> JobResult:
    """Run the job in ``spec_path`` on the providers file, else on the emulated market ``scenario``
    (None: the spec's :func:`default_scenario`). It is quoted first (unless ``quote`` is False and it
    has no ``confidence``) and held to that quote, or to the one in ``quote_path`` when given."""
    spec = load_spec(spec_path)
    scenario = scenario or default_scenario(spec)
    given = None if quote_path is None else load_given_quote(quote_path, spec)
    source = JobSource(out_dir=out_dir, providers_path=providers_path, scenario=scenario)
    if providers_path is not None:
        configs = load_providers_file(providers_path).providers
        check_offer(spec, {cfg.name: set(cfg.models) for cfg in configs})
        record = start_quote(
            spec,
            lambda: [build_provider(cfg) for cfg in configs],
            out_dir=out_dir,
            given=given,
            skip=not quote,
        )
        providers = [build_provider(cfg) for cfg in configs]
        outputs = run_job(spec, providers, source=source, console=console, quote=record)
    else:
        with _market(scenario) as market:
            check_offer(spec, market_offer(market))
            record = start_quote(
                spec,
                lambda: market_providers(market, spec.model),
                out_dir=out_dir,
                latencies=market_latencies(market),
                given=given,
                skip=not quote,
            )
            outputs = run_job(
                spec, market_providers(market, spec.model), source=source, console=console, quote=record
            )
    _print_outputs(console, outputs)
    return outputs.result
