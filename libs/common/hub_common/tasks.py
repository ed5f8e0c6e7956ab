"""Stopping a background task for sure.

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising when a
cancellation lands in the instant that result arrives (python/cpython#86296, fixed in 3.12).
nats-py waits for every reply and every pull through ``wait_for``, so a loop cancelled as a
reply arrives goes on as if it had never been cancelled, and a stop that awaits it waits
forever: a fetcher idling on its one-second pulls outlived its SIGTERM grace that way.
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long a cancelled task has to end (its ``finally`` blocks included) before it is
# cancelled again, in case the cancellation was swallowed.
RECANCEL_SECONDS = 1.0


async def cancel_and_wait(task: asyncio.Task[Any], *, recancel_seconds: float = RECANCEL_SECONDS) -> None:
    """Cancel ``task`` and return once it has ended, however it ended: a stopped task's
    failure is not the stop's, so it is retrieved here and not raised.

    A cancellation of the caller meanwhile is held back until the task has ended, then
    raised, so a stop that is itself stopped leaves nothing running behind it."""
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
    if not task.cancelled():
        task.exception()
    if caller_cancelled:
        raise asyncio.CancelledError
