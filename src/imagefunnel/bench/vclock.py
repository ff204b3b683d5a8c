"""Virtual time for benchmarks: an asyncio loop whose clock jumps to the next timer when idle.

Everything that waits through the loop (``asyncio.sleep``, ``asyncio.timeout``, ``call_later``)
takes no wall time, so hours of market time run in seconds, deterministically. ``on_advance`` lets a
caller move other clocks along (the LiteLLM baseline reads ``time.time()``; the benchmark moves it
with time-machine). Work handed to threads (``run_in_executor``) is waited for in real time, so a
thread's result never arrives "later" in virtual time than it should.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

__all__ = ["VirtualClockLoop", "run_virtual"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real selector without blocking; when nothing is ready, advances virtual time by
    the loop's requested timeout instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        loop = self.loop
        if events or loop is None or timeout == 0:
            return events
        if timeout is None or loop.threads_busy:
            # Only another thread can make progress now: wait for it for real (it wakes the loop).
            real: list[tuple[selectors.SelectorKey, int]] = super().select(None)
            return real
        if timeout > 0:
            loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at 0."""

    def __init__(self, *, on_advance: Callable[[float], None] | None = None) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        self._on_advance = on_advance
        self.threads_busy = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        if self._on_advance is not None:
            self._on_advance(self._now)

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.threads_busy += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self.threads_busy -= 1


def run_virtual(main: Coroutine[Any, Any, T], *, on_advance: Callable[[float], None] | None = None) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop` and close it."""
    loop = VirtualClockLoop(on_advance=on_advance)
    try:
        return loop.run_until_complete(main)
    finally:
        # Like asyncio.run: cancel what libraries left running (LiteLLM's logging worker...).
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
