"""Scoring on a Ray cluster through Ray Client (``IMAGEFUNNEL_EXECUTOR=ray://host:port``).

The cluster is a real Ray head started here (``ray start --head --block``, one CPU, free ports, its
session in a temp folder), stopped with SIGTERM and checked to leave no process behind. The client
side runs in a process of its own (ray_client_child.py, as a worker process would), since a Ray
Client connection changes every Ray call of its process and this session may also run ``ray_local``.

Token authentication is set explicitly on both sides: Ray 2.60 turns it on for a head whenever
``~/.ray/auth_token`` exists (a local ``ray.init`` writes one, and sets ``RAY_AUTH_MODE`` in its
process), so inheriting either would make these tests depend on what ran before them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from executor_fixtures import DEFECTIVE, PHOTOS
from ray_client_child import CLUSTER_ENV

from imagefunnel.errors import ExecutorError
from imagefunnel.executors import ray_pool

CHILD = Path(__file__).with_name("ray_client_child.py")
HEAD_START_S = 120  # `ray start` takes 6-13 s on two busy cores
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class RayHead:
    address: str  # ray://127.0.0.1:<client server port>
    marker: str  # the value of CLUSTER_ENV in every process of this cluster
    token: str | None  # its authentication token; None: authentication off
    process: subprocess.Popen[bytes]  # `ray start --block`, leader of the cluster's process group


def _environment(**settings: str | None) -> dict[str, str]:
    """This process's environment without Ray's authentication settings, then ``settings``."""
    env = {name: value for name, value in os.environ.items() if name not in AUTH_ENV}
    env.pop(CLUSTER_ENV, None)
    env.update({name: value for name, value in settings.items() if value is not None})
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes_with(marker: str) -> list[int]:
    """Processes of this cluster: they inherit CLUSTER_ENV=marker (workers rename themselves)."""
    needle = f"{CLUSTER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                pass
    return found


@contextmanager
def ray_head(*, token: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[RayHead]:
    """A one-CPU Ray head with its client server on a free port, taking ``token`` (None: no
    authentication); no process of it is left after."""
    marker = uuid.uuid4().hex
    client_port = _free_port()
    # A short folder: Ray's socket paths under it must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ray-") as folder:
        log = Path(folder) / "head.log"
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={_free_port()}",
            f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={_free_port()}",  # its fixed default may be taken
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--object-store-memory={100 * 1024**2}",
            f"--temp-dir={folder}/r",
        ]
        env = _environment(RAY_AUTH_MODE="token" if token else "disabled", RAY_AUTH_TOKEN=token)
        # The head forks each client's server from its proxy while gRPC threads run there; with
        # gRPC's fork handlers on, about one first connection in four to a fresh head died of
        # SIGSEGV on two busy cores (none in the runs with them off). connect_ray retries it too.
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        env.update({**(extra_env or {}), CLUSTER_ENV: marker})
        with log.open("w") as out:
            head = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + HEAD_START_S
            while "Ray runtime started" not in log.read_text():
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield RayHead(address=f"ray://127.0.0.1:{client_port}", marker=marker, token=token, process=head)
        finally:
            head.send_signal(signal.SIGTERM)  # --block: the head stops every process it started
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
            deadline = time.monotonic() + 15
            while (left := _processes_with(marker)) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            assert not left, f"the Ray head left processes {left} running"


@pytest.fixture(scope="module")
def cluster(ray_installed: object) -> Iterator[RayHead]:
    """A head that wants a token, as a cluster reachable from other machines should."""
    with ray_head(token=secrets.token_hex(32)) as head:
        yield head


def run_child(address: str, *, token: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """The child process scoring on ``address`` (sending ``token``); its result and how long it ran."""
    env = _environment(
        IMAGEFUNNEL_EXECUTOR=address, RAY_AUTH_MODE="token" if token else None, RAY_AUTH_TOKEN=token
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(CHILD)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.slow
def test_scoring_through_ray_client_gives_the_verdicts_of_in_process_scoring(cluster: RayHead) -> None:
    done, _ = run_child(cluster.address, token=cluster.token)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    # The child asserted that every verdict equals its in-process one; these say it scored on the
    # cluster (its workers carry the head's marker) through Ray Client, and what it found.
    assert seen["ran_on"] == cluster.marker
    assert seen["ray_client"] is True
    assert [name for name, passed in seen["passed"].items() if passed] == list(PHOTOS)
    assert set(seen["passed"]) == {*PHOTOS, *DEFECTIVE}


@pytest.mark.slow
def test_a_closed_port_is_a_one_line_error_naming_the_address_at_once(ray_installed: object) -> None:
    address = f"ray://127.0.0.1:{_free_port()}"  # nothing listens there
    done, took = run_child(address)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: executor {address}: nothing answers at 127.0.0.1:")
    # Ray Client alone retries for 30 s; the child's own start (imports, images) is most of this.
    assert took < 25, took


@pytest.mark.slow
def test_a_cluster_that_wants_a_token_says_so_at_once(cluster: RayHead) -> None:
    done, took = run_child(cluster.address)  # no RAY_AUTH_MODE, no token
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"error: executor {cluster.address}: the cluster requires an authentication token: set RAY_AUTH_MODE=token"
        in done.stderr
    )
    assert took < 25, took  # Ray Client alone says "connection timeout" after 30 s


@pytest.mark.slow
def test_a_wrong_token_is_told_apart_from_a_missing_one(cluster: RayHead) -> None:
    done, _ = run_child(cluster.address, token=secrets.token_hex(32))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the cluster refused this process's authentication token" in done.stderr


@pytest.mark.slow
def test_a_cluster_that_goes_away_mid_task_is_a_one_line_scoring_error(ray_installed: object) -> None:
    with ray_head() as head:
        # Ray Client waits this long (default 30 s) for the cluster to come back before failing.
        env = _environment(IMAGEFUNNEL_EXECUTOR=head.address, RAY_CLIENT_RECONNECT_GRACE_PERIOD="2")
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "--hold"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "holding":
                pytest.fail(f"the child did not get to its task:\n{child.communicate(timeout=60)[1][-3000:]}")
            os.killpg(head.process.pid, signal.SIGKILL)  # the whole head at once, as a crash would
            _, stderr = child.communicate(timeout=120)
        finally:
            child.kill()
    # Ray logs its reconnection attempts above; the error is the last line, and no traceback.
    assert child.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: scoring on Ray failed:") and "reconnect" in last, stderr


def test_a_port_that_answers_without_speaking_grpc_is_not_taken_for_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("grpc")
    monkeypatch.setattr(ray_pool, "CONNECT_TIMEOUT_S", 1.0)
    with closing(socket.socket()) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
        started = time.monotonic()
        with pytest.raises(ExecutorError, match=rf"127\.0\.0\.1:{port} accepts connections but is not a Ray"):
            ray_pool._reach(f"ray://127.0.0.1:{port}")
        assert time.monotonic() - started < 3
        for sock in accepted:
            sock.close()


def test_an_unknown_host_is_named() -> None:
    with pytest.raises(ExecutorError, match=r"unknown host 'no-such-head\.invalid'"):
        ray_pool._reach("ray://no-such-head.invalid:10001")


@pytest.mark.slow
def test_a_process_on_a_local_ray_instance_refuses_a_cluster_address(ray_local: Any) -> None:
    with pytest.raises(ExecutorError, match="already scores on a local instance"):
        ray_pool.connect_ray("ray://127.0.0.1:10001")
    assert not ray_local.util.client.ray.is_connected()


@pytest.mark.slow
def test_a_cluster_with_another_imagefunnel_is_refused_before_scoring(
    ray_installed: object, tmp_path: Path
) -> None:
    # The head's processes find this distribution first on their path: imagefunnel 99.0 "there".
    other = tmp_path / "site" / "imagefunnel-99.0.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: imagefunnel\nVersion: 99.0\n")
    with ray_head(extra_env={"PYTHONPATH": str(tmp_path / "site")}) as head:
        done, _ = run_child(head.address)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"executor {head.address}: the cluster has imagefunnel 99.0, this process {importlib.metadata.version('imagefunnel')}"
        in done.stderr
    )


class _FlakyRay:
    """Stands in for ``ray`` whose Ray Client connect fails ``failures`` times with ``message``."""

    def __init__(self, failures: int, message: str) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def init(self, **_: object) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionAbortedError(
                f"Initialization failure from server:\nTraceback ...\n{self.message}"
            )


def test_a_client_server_that_dies_starting_is_tried_again_a_few_times() -> None:
    dies = "RuntimeError: Starting Ray client server failed. See ray_client_server_23000.err"
    flaky = _FlakyRay(ray_pool.CLIENT_INIT_TRIES - 1, dies)
    ray_pool._client_init(flaky, "ray://head:10001")
    assert flaky.calls == ray_pool.CLIENT_INIT_TRIES
    always = _FlakyRay(99, dies)
    with pytest.raises(ConnectionAbortedError, match="Starting Ray client server failed"):
        ray_pool._client_init(always, "ray://head:10001")
    assert always.calls == ray_pool.CLIENT_INIT_TRIES
    other = _FlakyRay(99, "ValueError: bad runtime_env")  # not what a retry can mend
    with pytest.raises(ConnectionAbortedError):
        ray_pool._client_init(other, "ray://head:10001")
    assert other.calls == 1
