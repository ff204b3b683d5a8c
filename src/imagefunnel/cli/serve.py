"""``imagefunnel serve``, ``imagefunnel keys create`` and ``imagefunnel evaluations export``.

``serve`` runs the whole service in one process with no other setup: the API and dashboard, worker
tasks claiming jobs (interrupted ones are resumed on start), webhook delivery, and by default the
embedded emulated market as the providers (``--no-market --providers FILE`` for real endpoints).
Registered in ``cli/app.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagefunnel.errors import ImageFunnelError

__all__ = ["evaluations_app", "keys_app", "serve_cmd"]

console = Console()
keys_app = typer.Typer(help="API keys of the service's tenants.", no_args_is_help=True)
evaluations_app = typer.Typer(help="Evaluations stored by the service.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data", help="the service's folder: SQLite store and image blobs")]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in --data)")
]


def _settings(data: Path, database_url: str | None, **overrides: object):  # type: ignore[no-untyped-def]
    from imagefunnel.service.settings import ServiceSettings

    values = {"data_dir": data, **overrides}
    if database_url is not None:
        values["database_url"] = database_url
    return ServiceSettings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def _providers(
    *, market: bool, providers_file: Path | None, scenario: str
) -> Iterator[tuple[object, list[object]]]:
    """(factory, catalog): adapters per job, and one adapter per provider and model for discovery."""
    from imagefunnel.providers.base import Provider
    from imagefunnel.spec import JobSpec

    if not market:
        if providers_file is None:
            raise ImageFunnelError("--no-market needs --providers FILE (real endpoints)")
        from imagefunnel.providers.config import build_provider, load_providers_file

        configs = load_providers_file(providers_file).providers

        def from_file(_spec: JobSpec) -> Sequence[Provider]:
            return [build_provider(cfg) for cfg in configs]

        yield from_file, [build_provider(cfg) for cfg in configs]
        return
    from imagefunnel.cli.demo import market_offer, market_providers
    from imagefunnel.market.server import MarketServer

    with MarketServer(scenario) as server:
        # Background removal included: the self-hosted remover and the scenario's cutout APIs.
        models = sorted({m for served in market_offer(server).values() for m in served})

        def from_market(spec: JobSpec) -> Sequence[Provider]:
            return market_providers(server, spec.model)

        catalog = [p for model in models for p in market_providers(server, model)]
        console.print(f"[dim]emulated market '{scenario}' at {server.url}[/]")
        yield from_market, catalog  # type: ignore[misc]


def serve_cmd(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data: DataDir = Path("imagefunnel-service"),
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(min=0, help="worker tasks in this process (0: API only)")] = 1,
    market: Annotated[bool, typer.Option(help="serve the embedded emulated market as the providers")] = True,
    providers: Annotated[Path | None, typer.Option(help="providers YAML (with --no-market)")] = None,
    scenario: Annotated[str, typer.Option(help="emulated market scenario")] = "demo",
    tenant: Annotated[str, typer.Option(help="tenant of the key printed at first start")] = "default",
) -> None:
    """Run the service: API (/docs), dashboard (/), workers, webhooks and the emulated market."""
    import uvicorn

    from imagefunnel.service import create_app

    settings = _settings(data, database_url or os.environ.get("IMAGEFUNNEL_DATABASE_URL"), workers=workers)
    with _providers(market=market, providers_file=providers, scenario=scenario) as (factory, catalog):
        app = create_app(settings, providers=factory, catalog=catalog)  # type: ignore[arg-type]
        runtime = app.state.runtime
        if not runtime.tenancy.keys(runtime.tenancy.ensure_tenant(tenant).id):
            created = runtime.tenancy.create_key(tenant, name="first key")
            console.print(f"API key for tenant '{tenant}' (shown once): [bold]{created.secret}[/]")
        console.print(f"imagefunnel service on http://{host}:{port}  (API docs: /docs, dashboard: /)")
        uvicorn.run(app, host=host, port=port, log_level="warning")


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Argument(help="tenant name (created if new)")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    budget: Annotated[float | None, typer.Option(help="tenant budget cap in USD")] = None,
    rate: Annotated[float | None, typer.Option(help="tenant requests per second")] = None,
    burst: Annotated[int | None, typer.Option(help="tenant request burst")] = None,
    data: DataDir = Path("imagefunnel-service"),
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key for TENANT and print it: it is shown once, only its hash is stored."""
    from imagefunnel.store import Store
    from imagefunnel.store.tenancy import Tenancy

    settings = _settings(data, database_url or os.environ.get("IMAGEFUNNEL_DATABASE_URL"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url)
    try:
        created = Tenancy(store).create_key(
            tenant, name=name, budget_usd=budget, rate_per_s=rate, burst=burst
        )
    finally:
        store.close()
    console.print(f"key {created.key_id} for tenant '{tenant}' (shown once, store it now):")
    print(created.secret)


@evaluations_app.command("export")
def export_feedback(
    out: Annotated[
        Path, typer.Argument(help="new folder: images + labels.json, for `imagefunnel calibrate`")
    ],
    tenant: Annotated[str | None, typer.Option(help="only this tenant's feedback")] = None,
    evaluation: Annotated[str | None, typer.Option(help="only this evaluation")] = None,
    data: DataDir = Path("imagefunnel-service"),
    database_url: DatabaseUrl = None,
) -> None:
    """Write people's accept/reject feedback as a labelled set that `imagefunnel calibrate` reads."""
    from imagefunnel.service.feedback import export_feedback_set
    from imagefunnel.store import BlobStore, Store

    settings = _settings(data, database_url or os.environ.get("IMAGEFUNNEL_DATABASE_URL"))
    store = Store(settings.store_url)
    try:
        manifest = export_feedback_set(
            store, BlobStore(settings.data_dir / "blobs"), out, tenant=tenant, evaluation_id=evaluation
        )
    finally:
        store.close()
    accepted = sum(image.clean for image in manifest.images)
    console.print(f"wrote {len(manifest.images)} labelled images ({accepted} accepted) to {out}")


def bench_service_cmd(
    requests: Annotated[int, typer.Option(min=1, help="requests per concurrency level")] = 64,
    size: Annotated[int, typer.Option(min=64, help="image side in pixels")] = 512,
    jobs: Annotated[int, typer.Option(min=1, help="jobs for the submit → first event latency")] = 5,
    pairs: Annotated[int, typer.Option(min=2, help="interleaved in-process/service pairs")] = 40,
    write: Annotated[Path | None, typer.Option(help="update this Markdown file's section")] = None,
) -> None:
    """Evaluations API throughput and p50/p99 at 1, 8, 32 clients; overhead over in-process scoring."""
    import shlex
    import sys

    from imagefunnel.bench.service import markdown, run_service_bench

    bench = run_service_bench(requests=requests, size=size, jobs=jobs, pairs=pairs)
    command = ("imagefunnel bench service " + shlex.join(sys.argv[3:])).strip()
    text = markdown(
        type(bench)(**{**{f: getattr(bench, f) for f in bench.__dataclass_fields__}, "command": command})
    )
    console.print(text, markup=False, highlight=False)
    if write is not None:
        _write_section(write, text)
        console.print(f"wrote {write}")


def _write_section(path: Path, text: str) -> None:
    from imagefunnel.bench.doc_blocks import write_marked_block

    begin, end = "<!-- bench service -->", "<!-- /bench service -->"
    write_marked_block(path, start=begin, end=end, block=f"{begin}\n{text}{end}", heading=None)
