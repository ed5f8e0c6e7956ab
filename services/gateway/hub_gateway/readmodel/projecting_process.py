"""A rebuild's projecting processes: each decodes, validates, folds and writes a share of
what the rebuilding process reads.

Validating events is most of a rebuild's work (a company snapshot is 5-6 KB of figures,
60-90 µs in pydantic), and a Python process has one core for it. So ``hub rebuild`` reads
the streams in its own process and hands the raw messages over, in chunks, to a few of
these, each taking whole firms: one firm's messages all go to one process, in stream
order. Every rule of the projection works within the event's firm (it checks the rows it
touches belong to it), so firms fold independently, each process on the rows of its own
firms that it keeps in memory (``ReadModelInMemory``: the rebuild is the only writer of its
empty target). A process decodes each chunk as it arrives; at the end of a batch it folds
the batch through the live projection's rules and writes it in one transaction. Only raw
bytes cross between processes, which pickle for the price of a copy (decoded events would
cost more to unpickle than to validate).

Folding a whole batch at once, not chunk by chunk, matters: a company named by several
chunks would otherwise be loaded, compared and turned into a row again for each (three
times the folding's cost on the benchmark's history, measured).

Calls to a process run in the order they are made, on its one worker, so every batch is
folded on the rows the batches before it left.
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

from hub_common.db import create_engine, session_factory, transaction
from hub_common.events import InvalidEvent, decode_event, prepare_decoding
from hub_gateway.readmodel.projection import ReadModelInMemory, store
from hub_gateway.readmodel.state import StoredEvent

# A message as it crosses over: its stream, its sequence in the stream, its bytes.
RawMessage = tuple[str, int, bytes]

# Calls handed over and not yet done, at most: bounds what a rebuild holds in memory when
# reading outruns folding and writing.
_OUTSTANDING_CALLS = 64


@dataclass
class _Projector:
    """What a projecting process keeps between calls."""

    database_url: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    model: ReadModelInMemory = field(default_factory=ReadModelInMemory)
    # Decoded since the last write, in stream order.
    batch: list[StoredEvent[Any]] = field(default_factory=list)
    invalid: int = 0

    def __post_init__(self) -> None:
        self.engine = create_engine(self.database_url)
        self.sessions = session_factory(self.engine)


_projector: _Projector | None = None


def _start(database_url: str) -> None:
    """Runs once in the projecting process, before its first call."""
    global _projector
    prepare_decoding()
    _projector = _Projector(database_url)
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


def _fold_and_write(applied_at: datetime) -> int:
    """Fold the batch and write what it changed in one transaction; how many invalid
    messages were skipped since the last write."""
    projector = _the_projector()
    written = projector.model.fold(projector.batch, applied_at)

    async def write() -> None:
        async with transaction(projector.sessions) as session:
            # Positions only move forward: the other processes write the same streams'.
            await store(session, written)

    projector.loop.run_until_complete(write())
    invalid, projector.batch, projector.invalid = projector.invalid, [], 0
    return invalid


def _close() -> None:
    projector = _the_projector()
    projector.loop.run_until_complete(projector.engine.dispose())
    projector.loop.close()


class ProjectingProcess:
    """One projecting process, and the calls made to it, in order.

    Started with ``spawn``: the rebuilding process has threads and a live NATS connection,
    which a forked child must not inherit.
    """

    def __init__(self, database_url: str) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(database_url,)
        )
        self._outstanding: deque[asyncio.Future[Any]] = deque()

    async def started(self) -> None:
        """Once the process has started and imported what it needs."""
        await asyncio.get_running_loop().run_in_executor(self._pool, _ready)

    async def decode(self, messages: list[RawMessage]) -> None:
        """Hand a chunk over; returns at once unless too many calls are outstanding."""
        await self._call(_decode, messages)

    async def fold_and_write(self, applied_at: datetime) -> asyncio.Future[int]:
        """End the batch: the future gives the invalid messages skipped in it, once written."""
        return await self._call(_fold_and_write, applied_at)

    async def close(self) -> None:
        """Once every call made has run: close the target's connections, end the process."""
        await (await self._call(_close))
        await asyncio.to_thread(self.abandon)

    def abandon(self) -> None:
        """End the process without running the calls still waiting (the rebuild failed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _call(self, function: Any, *arguments: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)
        self._outstanding.append(future)
        # A failed call fails the rebuild as soon as it is seen, not at the end.
        while self._outstanding and (self._outstanding[0].done() or len(self._outstanding) > _OUTSTANDING_CALLS):
            await self._outstanding.popleft()
        return future
