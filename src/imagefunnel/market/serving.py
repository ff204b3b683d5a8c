"""Serve an ASGI app with uvicorn in a background thread on a loopback socket (emulators only)."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Executor

import uvicorn

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0
# How long an idle keep-alive connection stays open, as a hosted API's load balancer keeps it (they
# hold idle connections for a minute and more). uvicorn's own 5 s equals httpx's pool expiry, so a
# request sent on a pooled connection just as the server closed it met a reset: a "connection lost"
# that no real provider's fault caused (a 5 s cooldown's retry lands exactly there).
KEEP_ALIVE_S = 75


class ThreadedServer:
    """uvicorn in a daemon thread: ``start`` returns once it answers, ``stop`` joins the thread and
    shuts down ``executor`` (the pool the app renders on), if one is given."""

    def __init__(
        self, config: uvicorn.Config, *, host: str, port: int, name: str, executor: Executor | None = None
    ) -> None:
        config.timeout_keep_alive = KEEP_ALIVE_S
        self._server = uvicorn.Server(config)
        self._host = host
        self._port = port
        self._name = name
        self._executor = executor
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind, serve, wait until the server answers; return the bound port."""
        # proto=IPPROTO_TCP matters: asyncio only disables Nagle on sockets that declare TCP, and
        # with Nagle on, every keep-alive response stalls 40 ms on the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} failed to start")
            time.sleep(0.002)
        return port

    def stop(self) -> None:
        """Stop serving, join the thread, shut the executor down; safe to call twice."""
        thread, self._thread = self._thread, None
        executor, self._executor = self._executor, None
        if thread is not None:
            self._server.should_exit = True
            thread.join(SHUTDOWN_TIMEOUT_S)
            if thread.is_alive():
                # Clients holding connections open past the grace period: stop waiting for them.
                self._server.force_exit = True
                thread.join(SHUTDOWN_TIMEOUT_S)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
