"""cancel_and_wait: a background task is stopped for sure, even one that swallows a cancellation
as Python 3.11's wait_for does (tests/integration/test_in_flight.py meets the real one); and
finished_despite_cancellation: a short write a stop must not cut short."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hub_common.tasks import cancel_and_wait, finished_despite_cancellation


async def _swallows_the_first_cancellation(ended: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(60)
    try:
        await asyncio.sleep(60)
    finally:
        ended.set()


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    ended = asyncio.Event()
    task = asyncio.create_task(_swallows_the_first_cancellation(ended))
    await asyncio.sleep(0)
    # Waited for, not timed out: a timeout's cancellation would be held back by the stop.
    stopping = asyncio.create_task(cancel_and_wait(task, recancel_seconds=0.05))
    stopped, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopped, "the stop waited for a task that had swallowed its cancellation"
    assert task.cancelled()
    assert ended.is_set()


async def test_a_stopped_tasks_failure_is_not_the_stops() -> None:
    async def fails_as_it_stops() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise RuntimeError("closing failed")

    task = asyncio.create_task(fails_as_it_stops())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)


async def test_a_cancelled_stop_still_waits_for_its_task_to_end() -> None:
    """A stop that is itself stopped leaves nothing running behind it."""
    ended = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.2))
            ended.set()

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert ended.is_set()
    assert task.done()


async def test_work_finished_despite_cancellation_ends_before_the_cancellation_is_raised() -> None:
    written: list[str] = []

    async def write() -> str:
        await asyncio.sleep(0.05)  # a transaction in progress
        written.append("committed")
        return "done"

    async def caller() -> str:
        return await finished_despite_cancellation(write())

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # cancelled again while it waits for the work
    with pytest.raises(asyncio.CancelledError):
        await task
    assert written == ["committed"]
    assert await finished_despite_cancellation(write()) == "done"


async def test_work_finished_despite_cancellation_raises_its_own_failure() -> None:
    async def failing() -> None:
        raise LookupError("no such row")

    with pytest.raises(LookupError):
        await finished_despite_cancellation(failing())
