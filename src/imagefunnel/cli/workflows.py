"""``imagefunnel workflows``: deploy any API-format ComfyUI workflow and run it by name.

    imagefunnel workflows detect flow.json > inputs.yaml      # what can be set; edit names and types
    imagefunnel workflows add flow.json --name blur --inputs inputs.yaml --server http://gpu-1:8188
    imagefunnel workflows run blur --set color=16711680 --server http://gpu-1:8188 --out out/
    imagefunnel workflows list

``--emulate`` runs against an emulated ComfyUI box in this process instead of a server (offline).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from imagefunnel.errors import ImageError, SpecError

__all__ = ["workflows_app"]

workflows_app = typer.Typer(help="Deploy ComfyUI workflows and run them by name.", no_args_is_help=True)
console = Console()

Registry = Annotated[
    Path, typer.Option("--registry", help="folder of deployed workflows", envvar="IMAGEFUNNEL_WORKFLOWS")
]
Servers = Annotated[list[str] | None, typer.Option("--server", help="ComfyUI server URL (repeat for a pool)")]
Emulate = Annotated[bool, typer.Option(help="use an emulated ComfyUI box in this process (offline)")]
_DEFAULT_REGISTRY = Path("imagefunnel-workflows")


@contextlib.contextmanager
def _servers(
    urls: list[str] | None, *, emulate: bool, usd_per_hour: float
) -> Iterator[list[tuple[str, str, float]]]:
    """(name, url, $/hour) of the servers to use; an emulated box when asked."""
    if urls:
        yield [(f"box-{i + 1}", url, usd_per_hour) for i, url in enumerate(urls)]
        return
    if not emulate:
        raise SpecError("give --server URL (repeat for a pool) or --emulate")
    from imagefunnel.market.comfyui_app import ComfyUIBox, ComfyUIServer

    with ComfyUIServer(ComfyUIBox(name="emulated-box", usd_per_hour=usd_per_hour), time_factor=0.05) as box:
        yield [("emulated-box", box.url, usd_per_hour)]


def _load(path: Path) -> Any:
    from imagefunnel.providers.comfyui_workflow import load_workflow

    return load_workflow(path)


async def _object_info(url: str) -> dict[str, Any]:
    from imagefunnel.workflows.pool import ComfyBox, ComfyPool

    pool = ComfyPool([ComfyBox("target", url, 1.0)])
    try:
        return await pool.object_info(pool.boxes[0])
    finally:
        await pool.aclose()


@workflows_app.command("detect")
def detect_cmd(
    workflow: Annotated[Path, typer.Argument(help="API-format workflow JSON ('Export (API)')")],
    server: Annotated[str | None, typer.Option(help="type inputs with this server's /object_info")] = None,
) -> None:
    """Print the workflow's settable inputs as the YAML that `add --inputs` takes (exposed ones first)."""
    from imagefunnel.workflows.detect import detect_inputs
    from imagefunnel.workflows.manifest import draft_inputs

    flow = _load(workflow)
    import asyncio

    info = asyncio.run(_object_info(server)) if server else None
    found = detect_inputs(flow, object_info=info)
    exposed = {name: spec.model_dump(exclude_defaults=True) for name, spec in draft_inputs(found).items()}
    import yaml

    print(yaml.safe_dump({"inputs": exposed}, sort_keys=False, allow_unicode=True), end="")
    hidden = [f"{i.name} ({i.class_type}.{i.input})" for i in found if not i.exposed]
    if hidden:
        print("# not exposed (add any under inputs: to expose it): " + ", ".join(hidden))


@workflows_app.command("add")
def add_cmd(
    workflow: Annotated[Path, typer.Argument(help="API-format workflow JSON")],
    name: Annotated[str, typer.Option(help="name to deploy it as (lower-case, digits, - and _)")],
    inputs: Annotated[
        Path | None, typer.Option(help="YAML of the exposed inputs (default: detected)")
    ] = None,
    output_node: Annotated[str | None, typer.Option(help="node whose images are the result")] = None,
    server: Servers = None,
    emulate: Emulate = False,
    registry: Registry = _DEFAULT_REGISTRY,
) -> None:
    """Deploy a workflow: its exposed inputs are checked against the server's /object_info
    (node classes, model files, input names), then stored as a new version."""
    from imagefunnel.workflows.detect import detect_inputs
    from imagefunnel.workflows.manifest import draft_inputs, parse_inputs
    from imagefunnel.workflows.registry import WorkflowRegistry
    from imagefunnel.workflows.validate import check_workflow

    flow = _load(workflow)
    with _servers(server, emulate=emulate, usd_per_hour=1.0) as boxes:
        import asyncio

        info = asyncio.run(_object_info(boxes[0][1]))
    if inputs is not None:
        exposed = parse_inputs(inputs.read_text(encoding="utf-8"), source=str(inputs))
    else:
        exposed = draft_inputs(detect_inputs(flow, object_info=info))
    checked = check_workflow(flow, exposed, info)
    deployed = WorkflowRegistry(registry).add(name, flow, checked, output_node=output_node)
    console.print(f"deployed [bold]{deployed.name}[/] version {deployed.manifest.version} ({deployed.model})")
    for key, spec in checked.items():
        console.print(f"  {key}: {spec.type} = {spec.default!r}  [dim]{spec.description}[/]")


@workflows_app.command("list")
def list_cmd(registry: Registry = _DEFAULT_REGISTRY) -> None:
    """Deployed workflows, their latest version and inputs."""
    from imagefunnel.workflows.registry import WorkflowRegistry

    table = Table(title="deployed workflows")
    for column in ("name", "version", "inputs"):
        table.add_column(column)
    for deployed in WorkflowRegistry(registry).deployed():
        table.add_row(deployed.name, str(deployed.manifest.version), ", ".join(deployed.manifest.inputs))
    console.print(table)


def _parse_sets(sets: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected key=value")
        values[key.strip()] = value
    return values


@workflows_app.command("run")
def run_cmd(
    name: Annotated[str, typer.Argument(help="a deployed workflow")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value (an image input: a file path)")
    ] = None,
    version: Annotated[int | None, typer.Option(help="version to run (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the output images")] = Path("workflow-out"),
    usd_per_hour: Annotated[float, typer.Option(min=0.0, help="servers' GPU price")] = 2.69,
    repeat: Annotated[int, typer.Option(min=1, help="run it N times and report round-trip latency")] = 1,
    vary: Annotated[
        str | None, typer.Option(help="an int input to add the repeat's number to (fresh, uncached runs)")
    ] = None,
    server: Servers = None,
    emulate: Emulate = False,
    registry: Registry = _DEFAULT_REGISTRY,
) -> None:
    """Run a deployed workflow on the least-loaded healthy server; write its images, print its cost."""
    from imagefunnel.imaging import read_image_file
    from imagefunnel.workflows.manifest import bind_values
    from imagefunnel.workflows.pool import ComfyBox, ComfyPool, WorkflowRun
    from imagefunnel.workflows.registry import WorkflowRegistry

    deployed = WorkflowRegistry(registry).get(name, version)
    given: dict[str, Any] = dict(_parse_sets(set_ or []))
    images: dict[str, bytes] = {}
    for key, spec in deployed.manifest.inputs.items():
        if spec.type == "image" and key in given:
            path = Path(str(given[key]))
            try:
                images[key] = read_image_file(path)  # refuses pipes and devices, bounds the read
            except ImageError as exc:
                raise SpecError(f"{key}: image file {path}: {exc}", field=key) from exc
    values = bind_values(deployed.manifest, given)
    if vary is not None and deployed.manifest.inputs.get(vary, None) is None:
        raise SpecError(f"--vary {vary}: workflow {name} has no such input")
    with _servers(server, emulate=emulate, usd_per_hour=usd_per_hour) as boxes:

        async def go() -> list[WorkflowRun]:
            pool = ComfyPool([ComfyBox(n, url, price) for n, url, price in boxes])
            try:
                runs = []
                for i in range(repeat):
                    bumped = {**values, vary: int(values[vary]) + i} if vary else values
                    runs.append(await pool.run(deployed, bumped, images))
                return runs
            finally:
                await pool.aclose()

        import asyncio

        runs = asyncio.run(go())
    out.mkdir(parents=True, exist_ok=True)
    last = runs[-1]
    for image in last.images:
        (out / image.filename).write_bytes(image.data)
    console.print(
        f"{deployed.name} v{last.version} on {last.box}: {len(last.images)} image(s) in {out}, "
        f"{last.gpu_seconds:.3f} GPU-s, ${last.usd:.6f}"
    )
    if repeat > 1:
        times = sorted(run.seconds * 1000 for run in runs)
        p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
        console.print(
            f"round trip over {repeat} runs: median {statistics.median(times):.0f} ms, p90 {p90:.0f} ms"
        )
