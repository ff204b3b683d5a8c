"""The emulated market as a process of its own, and the CLI as subprocesses, for the crash bench.

One ``imagefunnel market serve`` outlives every job the crash bench kills, so its billing log is the
providers' side of the bill for all of them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from imagefunnel.cli.market_serve import MARKET_KEY_ENV
from imagefunnel.errors import ImageFunnelError

__all__ = ["CRASH_SCENARIO", "MODEL", "MarketProcess", "cli_process", "market_process", "wait_for"]

MODEL = "fal-ai/flux/dev"
# Two queue (fal) providers with steady prices: every request is named by the provider the moment
# it is accepted, so a kill can land before, during or after any stage of a request. Requests take
# long enough (0.3-1 s) that kills catch several in flight; one in five images fails the scorer.
CRASH_SCENARIO: dict[str, object] = {
    "name": "crash",
    "seed": 11,
    "providers": [
        {
            "name": name,
            "protocol": "fal",
            "models": [MODEL],
            "price_usd_per_mp": price,
            "processing_s": [0.3, 1.0],
            "defect_rate": 0.2,
            "defect_mix": {"noise": 1},
        }
        for name, price in (("north", 0.02), ("south", 0.024))
    ],
}


def _env() -> dict[str, str]:
    return {**os.environ, MARKET_KEY_ENV: "crash-bench", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def cli_process(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "imagefunnel", *args], stdout=out, stderr=subprocess.STDOUT, env=_env()
        )


def wait_for(what: str, check: Callable[[], bool], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ImageFunnelError(f"crash bench: timed out waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class MarketProcess:
    url: str
    providers_file: Path

    def billing(self) -> list[dict[str, object]]:
        records: list[dict[str, object]] = httpx.get(f"{self.url}/_market/billing", timeout=30).json()
        return records

    def drained(self) -> bool:
        stats = httpx.get(f"{self.url}/_market/stats", timeout=30).json()
        return not any(int(p["queued"]) + int(p["running"]) for p in stats.values())


@contextmanager
def market_process(scenario: str | None, work: Path) -> Iterator[MarketProcess]:
    """Serve ``scenario`` (a built-in name or YAML path; None: ``CRASH_SCENARIO``) until the block ends."""
    if scenario is None:
        scenario_path = work / "market.yaml"
        scenario_path.write_text(yaml.safe_dump(CRASH_SCENARIO, sort_keys=False), encoding="utf-8")
        scenario = str(scenario_path)
    _refuse_boxes(scenario)
    providers = work / "providers.yaml"
    log = work / "market.log"
    args = ["market", "serve", "--scenario", scenario, "--providers-out", str(providers), "--model", MODEL]
    proc = cli_process(args, log)
    try:
        url: list[str] = []

        def up() -> bool:
            if proc.poll() is not None:
                raise ImageFunnelError(f"crash bench: the market exited: {log.read_text()[-400:]}")
            url[:] = re.findall(r"http://127\.0\.0\.1:\d+", log.read_text())[:1]
            return bool(url) and providers.exists()

        wait_for("the market to serve", up, timeout_s=120)
        yield MarketProcess(url[0], providers)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _refuse_boxes(scenario: str) -> None:
    from imagefunnel.market.scenario import load_scenario

    loaded = load_scenario(scenario)
    if loaded.comfyui_boxes:
        raise ImageFunnelError(
            f"scenario {loaded.name!r} has self-hosted ComfyUI boxes, which bill GPU time outside the "
            "market's billing log; the crash bench compares the ledger with that log alone"
        )
