import asyncio
import selectors
import time

import pytest

from imagefunnel.bench.vclock import VirtualClockLoop, run_virtual


def test_an_hour_of_sleeping_takes_no_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # No wall-clock bound: the loop takes no wall time exactly when it never asks the operating
    # system to block, so record every timeout it hands the real selector.
    real_select = selectors.DefaultSelector.select
    timeouts: list[float | None] = []

    def recording_select(
        self: selectors.DefaultSelector, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        timeouts.append(timeout)
        return real_select(self, timeout)

    monkeypatch.setattr(selectors.DefaultSelector, "select", recording_select)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.gather(asyncio.sleep(3600), asyncio.sleep(1800))
        return loop.time()

    assert run_virtual(main()) == pytest.approx(3600.0)
    assert timeouts and all(t == 0 for t in timeouts)


def test_timeouts_fire_at_their_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.sleep(100)
        return loop.time()

    assert run_virtual(main()) == pytest.approx(30.0)


def test_thread_work_is_waited_for_without_advancing_the_clock() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(asyncio.sleep(50))
        value = await loop.run_in_executor(None, lambda: time.sleep(0.05) or 7)  # type: ignore[func-returns-value]
        at = loop.time()
        await sleeper
        return at, value

    at, value = run_virtual(main())
    assert value == 7
    assert at == pytest.approx(0.0), "the thread's result did not arrive 'after' the 50 s sleep"


def test_on_advance_sees_every_step_and_leftover_tasks_are_cancelled() -> None:
    seen: list[float] = []

    async def main() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(10_000))  # left running on purpose
        await asyncio.sleep(2)
        await asyncio.sleep(3)

    run_virtual(main(), on_advance=seen.append)
    assert seen == [pytest.approx(2.0), pytest.approx(5.0)]
    assert isinstance(VirtualClockLoop().time(), float)
