"""Stopping a background task for sure.

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising when a
cancellation lands in the instant that result arrives (python/cpython#86296, fixed in 3.12).
nats-py waits for every reply and every pull through ``wait_for``, so a loop cancelled as a
reply arrives goes on as if it had never been cancelled, and a stop that awaits it waits
forever: a fetcher idling on its one-second pulls outlived its SIGTERM grace that way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hub_common.logging import get_logger

logger = get_logger(__name__)

T = TypeVar("T")

# How long a cancelled task has to end (its ``finally`` blocks included) before it is
# cancelled again, in case the cancellation was swallowed.
RECANCEL_SECONDS = 1.0


async def cancel_and_wait(task: asyncio.Task[Any], *, recancel_seconds: float = RECANCEL_SECONDS) -> None:
    """Cancel ``task`` and return once it has ended, however it ended: a stopped task's
    failure is not the stop's, so it is logged here, not raised.

    A cancellation of the caller meanwhile is held back until the task has ended, then
    raised, so a stop that is itself stopped leaves nothing running behind it; a timeout
    around this call therefore bounds nothing (bound the task's own work instead)."""
    caller_cancelled = False
    task.cancel()
    while True:
        try:
            await asyncio.wait({task}, timeout=recancel_seconds)
        except asyncio.CancelledError:
            caller_cancelled = True  # the task keeps its time to end
            continue
        if task.done():
            break
        task.cancel()
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("task had failed when it was stopped", task=task.get_name(), error=repr(error)[:300])
    if caller_cancelled:
        raise asyncio.CancelledError


async def finished_despite_cancellation(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even if the caller is cancelled meanwhile, then raise that
    cancellation. For a short database transaction a stop would otherwise cut short
    mid-statement: SQLAlchemy then terminates the connection, and with aiosqlite that can
    leave a close waiting for good, so the process never exits."""
    task = asyncio.ensure_future(work)
    caller_cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            caller_cancelled = True
            continue
        break
    if caller_cancelled:
        raise asyncio.CancelledError
    return result
