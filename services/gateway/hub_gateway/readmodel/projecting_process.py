"""A rebuild's second process: it decodes, validates and folds what the first one reads.

Validating events is most of a rebuild's work (a company snapshot is 5-6 KB of figures,
about 60-90 µs in pydantic), and a Python process has one core for it. So ``hub rebuild``
reads the streams in its own process and hands the raw messages over, in chunks, to this
one, which decodes and validates each chunk as it arrives. At the end of a batch it folds
the batch through the live projection's rules, on the rows it keeps in memory
(``ReadModelInMemory``: the rebuild is the only writer of its empty target), and hands
back what the target must write; the first process writes it while this one goes on with
the next batch. Raw bytes go one way and changed rows the other: both pickle cheaply,
unlike decoded events (a snapshot's model takes longer to unpickle than to validate).

Folding a whole batch at once, not chunk by chunk, matters: a company named by several
chunks would otherwise be loaded, compared and turned into a row again for each (three
times the folding's cost on the benchmark's history, measured).

Calls run in the order they are made, on one worker, so every batch is folded on the rows
the batches before it left.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub_common.events import InvalidEvent, decode_event, prepare_decoding
from hub_gateway.readmodel.projection import ReadModelInMemory, Written
from hub_gateway.readmodel.state import StoredEvent

# A message as it crosses over: its stream, its sequence in the stream, its bytes.
RawMessage = tuple[str, int, bytes]

# Calls handed over and not yet done, at most: bounds what a rebuild holds in memory when
# reading outruns folding and writing.
_OUTSTANDING_CALLS = 64


@dataclass
class _Projector:
    """What the projecting process keeps between calls."""

    model: ReadModelInMemory = field(default_factory=ReadModelInMemory)
    # Decoded since the last write, in stream order.
    batch: list[StoredEvent[Any]] = field(default_factory=list)
    invalid: int = 0


_projector: _Projector | None = None


def _start() -> None:
    """Runs once in the projecting process, before its first call."""
    global _projector
    prepare_decoding()
    _projector = _Projector()
    # For the process's life: it allocates several short-lived objects per message, and the
    # collector's full passes over what is alive (schemas, tables, modules) would cost more
    # than everything else; reference counting frees nearly everything at once.
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(gc.get_threshold()[0], 50_000))


def _the_projector() -> _Projector:
    assert _projector is not None, "the projecting process was not started"
    return _projector


def _ready() -> bool:
    return _projector is not None


def _decode(messages: list[RawMessage]) -> None:
    """Decode and validate a chunk into the batch."""
    projector = _the_projector()
    for stream, sequence, data in messages:
        try:
            projector.batch.append(StoredEvent(decode_event(data), stream, sequence))
        except InvalidEvent:
            # The live consumers dead-letter these without advancing their position, so
            # skipping them keeps the rebuilt positions equal to the live ones.
            projector.invalid += 1


def _fold(applied_at: datetime) -> tuple[Written, int]:
    """Fold the batch; what the target must write, and how many invalid messages were
    skipped since the last fold."""
    projector = _the_projector()
    written = projector.model.fold(projector.batch, applied_at)
    invalid, projector.batch, projector.invalid = projector.invalid, [], 0
    return written, invalid


class ProjectingProcess:
    """The process, and the calls made to it, in order.

    Started with ``spawn``: the rebuilding process has threads and a live NATS connection,
    which a forked child must not inherit.
    """

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start
        )
        self._outstanding: deque[asyncio.Future[Any]] = deque()

    async def started(self) -> None:
        """Once the process has started and imported what it needs."""
        await asyncio.get_running_loop().run_in_executor(self._pool, _ready)

    async def decode(self, messages: list[RawMessage]) -> None:
        """Hand a chunk over; returns at once unless too many calls are outstanding."""
        await self._call(_decode, messages)

    async def fold(self, applied_at: datetime) -> asyncio.Future[tuple[Written, int]]:
        """End the batch: the future gives what to write, and the invalid messages skipped."""
        return await self._call(_fold, applied_at)

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _call(self, function: Any, *arguments: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)
        self._outstanding.append(future)
        # A failed call fails the rebuild as soon as it is seen, not at the end.
        while self._outstanding and (self._outstanding[0].done() or len(self._outstanding) > _OUTSTANDING_CALLS):
            await self._outstanding.popleft()
        return future
