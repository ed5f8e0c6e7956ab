"""Rebuilding the read model from the streams into a fresh database (invariant 3).

Both streams are read from their first message with ephemeral pull consumers that need no
acknowledgement, so a rebuild never touches the gateway's durables and JetStream keeps no
per-message state for it. Each stream is read up to the last sequence it held when the
rebuild started: a fixed end, so the rebuild finishes even while the hub keeps publishing.

Messages of the two streams are merged by the time JetStream stored them, which replays
the history in about the order the live gateway saw it, and handed over in chunks to a
second process (``projecting_process.py``), which decodes and validates them, folds them
through the live projection's rules (``rules.py``) and writes them in batches of
thousands: one statement per table and one position per stream per batch
(``projection.changed_rows`` and ``projection.store``). There is one projection code path;
a rebuild only takes bigger bites, and spreads them over two cores: this process reads
while the other validates, folds and writes. ``table_checksums`` then compares a rebuilt
model with a live one, table by table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import heapq
import json
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, ReplayPolicy
from sqlalchemy import Table, func, select
from sqlmodel import SQLModel

from hub_common.db import create_engine, migrate, session_factory
from hub_common.logging import get_logger
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.readmodel.models import (
    AccountantRow,
    ClientRow,
    CompanyRateRow,
    CompanyRow,
    ConnectionTestRow,
    FailureRow,
    FirmRow,
    ProjectionPosition,
    RefreshRow,
    TenantAccessRow,
)
from hub_gateway.readmodel.projecting_process import ProjectingProcess, RawMessage

logger = get_logger(__name__)

REBUILT_STREAMS = (EVENTS_STREAM, SNAPSHOTS_STREAM)

# Every projected table. Sessions, API tokens, preferences and saved views are the
# gateway's own records, not projections of events, so a rebuild neither creates nor
# compares them.
PROJECTED_MODELS: tuple[type[SQLModel], ...] = (
    FirmRow,
    AccountantRow,
    ClientRow,
    CompanyRow,
    CompanyRateRow,
    ConnectionTestRow,
    FailureRow,
    RefreshRow,
    TenantAccessRow,
    ProjectionPosition,
)
# When the projection ran, not what it projected: a rebuild necessarily differs here.
NOT_COMPARED_COLUMNS = frozenset({"snapshot_applied_at"})
# Text columns holding a JSON document, compared as documents.
JSON_COLUMNS = frozenset({"card_json", "failure_json", "figures_json", "result_json"})

# Events written per transaction: large, so writing the rows a batch touches (a few
# statements whatever its size) costs little per event.
DEFAULT_BATCH_SIZE = 5000
# Messages received, and handed to the projecting process, at a time: small, so that it
# decodes while the next ones are read, large enough that a hand-over costs little per
# message.
DEFAULT_CHUNK_SIZE = 100
# Projecting processes: one per core, since they do most of the work (more would only take
# turns), and four at most: beyond that the one reading process is the bottleneck.
DEFAULT_PROCESSES = min(4, os.cpu_count() or 1)
# Chunks received ahead of the reader, per stream: enough work for the projecting process
# to go on with while flow control resumes a paused server (nats-py answers it within
# 250 ms).
_CHUNKS_AHEAD = 50
# What nats-py may hold beyond that before the reader takes it (flow control bounds it
# well below these).
_PENDING_MESSAGES = 100_000
_PENDING_BYTES = 256 * 1024 * 1024
# How long a stream may stay silent before the reader concludes it has nothing more (a
# message below the end sequence may have been removed by the stream's limits).
_SILENCE_SECONDS = 2.0


class RebuildTargetNotEmpty(RuntimeError):
    """The target already holds a projection: a rebuild must start from an empty model."""


@dataclass
class RebuildResult:
    messages: int = 0
    invalid: int = 0
    # Reading and applying; the schema migration before it is not counted.
    elapsed_seconds: float = 0.0
    # The last sequence of each stream the rebuild read up to.
    end_sequences: dict[str, int] = field(default_factory=dict)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass(frozen=True)
class _StreamExtent:
    stream: str
    messages: int
    last_sequence: int


async def _extent(js: JetStreamContext, stream: str) -> _StreamExtent:
    state = (await js.stream_info(stream)).state
    return _StreamExtent(stream=stream, messages=state.messages, last_sequence=state.last_seq)


class _StreamReader:
    """One stream's messages in stream order, up to its end, received ahead in chunks.

    An ordered push consumer: the server sends the stream as fast as the reader takes it,
    with no request per batch, and nats-py restarts it from the right place if a message
    goes missing. When the reader falls behind (``_CHUNKS_AHEAD`` chunks waiting), taking
    the next message waits, and JetStream's flow control pauses the server.
    """

    def __init__(self, js: JetStreamContext, extent: _StreamExtent, chunk_size: int) -> None:
        self._js = js
        self._extent = extent
        self._chunk_size = chunk_size
        self._chunks: asyncio.Queue[list[Msg] | None] = asyncio.Queue(maxsize=_CHUNKS_AHEAD)
        self._chunk: list[Msg] = []
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_received = time.monotonic()
        self._ended = False

    async def __aenter__(self) -> _StreamReader:
        if self._extent.messages == 0:
            await self._end()
            return self
        self._subscription = await self._js.subscribe(
            "hub.>",
            stream=self._extent.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            config=ConsumerConfig(replay_policy=ReplayPolicy.INSTANT, mem_storage=True, num_replicas=1),
            cb=self._received,
            pending_msgs_limit=_PENDING_MESSAGES,
            pending_bytes_limit=_PENDING_BYTES,
        )
        self._watchdog = asyncio.create_task(self._end_when_silent())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._subscription is not None:
            # The ordered consumer is ephemeral: the server drops it once nobody listens.
            with contextlib.suppress(nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                await self._subscription.unsubscribe()

    async def _received(self, msg: Msg) -> None:
        if self._ended:
            return
        self._last_received = time.monotonic()
        sequence = msg.metadata.sequence.stream
        if sequence <= self._extent.last_sequence:
            self._chunk.append(msg)
        if sequence >= self._extent.last_sequence:
            await self._end()
        elif len(self._chunk) >= self._chunk_size:
            chunk, self._chunk = self._chunk, []
            await self._chunks.put(chunk)

    async def _end_when_silent(self) -> None:
        """End the stream if nothing comes for a while: its last messages were removed by the
        stream's limits since the rebuild started."""
        while not self._ended:
            await asyncio.sleep(_SILENCE_SECONDS / 4)
            if time.monotonic() - self._last_received > _SILENCE_SECONDS:
                await self._end()

    async def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._chunk:
            await self._chunks.put(self._chunk)
            self._chunk = []
        await self._chunks.put(None)

    async def messages(self) -> AsyncIterator[Msg]:
        while (chunk := await self._chunks.get()) is not None:
            for msg in chunk:
                yield msg


async def _merged_by_time(streams: list[AsyncIterator[Msg]]) -> AsyncIterator[Msg]:
    """Messages of several streams, each kept in its own order, interleaved by stored time."""
    heads: list[tuple[datetime, str, int, int, Msg]] = []

    async def push(index: int) -> None:
        msg = await anext(streams[index], None)
        if msg is not None:
            metadata = msg.metadata
            # Stream and sequence break ties deterministically; the index finds the source.
            heapq.heappush(heads, (metadata.timestamp, metadata.stream, metadata.sequence.stream, index, msg))

    for index in range(len(streams)):
        await push(index)
    while heads:
        *_, index, msg = heapq.heappop(heads)
        yield msg
        await push(index)


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """Garbage collection for a burst of short-lived objects.

    A rebuild allocates several objects per message, and with the default thresholds the
    collector's full passes over everything alive (schemas, tables, modules) took 30-170 ms
    each, a third of a rebuild of a thousand messages. What is alive at the start is frozen
    out of those passes, and the youngest generation is collected less often; reference
    counting still frees nearly everything at once.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _ensure_empty(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            positions = (await session.execute(select(func.count()).select_from(ProjectionPosition))).scalar_one()
    finally:
        await engine.dispose()
    if positions:
        raise RebuildTargetNotEmpty("the target database already holds a read model; rebuild into an empty one")


async def rebuild(
    js: JetStreamContext,
    database_url: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    processes: int = DEFAULT_PROCESSES,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Project both streams, from their start, into the empty database at ``database_url``.

    ``processes`` projecting processes share the firms; ``progress(applied, total)`` is
    called after each written batch, ``total`` counting the messages the streams held at
    the start.
    """
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    await _ensure_empty(database_url)
    projecting = [ProjectingProcess(database_url) for _ in range(processes)]
    try:
        await asyncio.gather(*(process.started() for process in projecting))
        with _collecting_less():
            result = await _project_streams(js, projecting, batch_size, chunk_size, progress)
        await asyncio.gather(*(process.close() for process in projecting))
    except BaseException:
        await asyncio.gather(*(asyncio.to_thread(process.abandon) for process in projecting))
        raise
    logger.info(
        "read model rebuilt",
        messages=result.messages,
        invalid=result.invalid,
        elapsed_seconds=round(result.elapsed_seconds, 3),
        messages_per_second=round(result.messages_per_second),
    )
    return result


def _firm_of(subject: str) -> str:
    """The firm a message's subject names (``hub.<firm_id>.…``), as it is spelled there."""
    parts = subject.split(".", 2)
    return parts[1] if len(parts) > 1 else subject


async def _project_streams(
    js: JetStreamContext,
    projecting: list[ProjectingProcess],
    batch_size: int,
    chunk_size: int,
    progress: Callable[[int, int], None] | None,
) -> RebuildResult:
    """Read both streams merged by time and hand each firm's messages to its projecting
    process; timed from the first read to the last batch written (the migration and the
    processes' start, fixed costs, are not)."""
    result = RebuildResult()
    started = time.perf_counter()
    extents = list(await asyncio.gather(*(_extent(js, stream) for stream in REBUILT_STREAMS)))
    result.end_sequences = {extent.stream: extent.last_sequence for extent in extents}
    total = sum(extent.messages for extent in extents)
    applied = 0
    # Batches being written, in order: each process's part, and the messages they account for.
    writing: deque[tuple[list[asyncio.Future[int]], int]] = deque()
    # Each process's next chunk.
    chunks: list[list[RawMessage]] = [[] for _ in projecting]
    in_batch = 0
    in_last_batch = False

    async def account(every: bool) -> None:
        """Count the written batches, in order (all of them if ``every``, else those done)."""
        nonlocal applied
        while writing and (every or all(part.done() for part in writing[0][0])):
            parts, messages = writing.popleft()
            for part in parts:
                result.invalid += await part
            applied += messages
            if progress is not None:
                progress(applied, total)

    async def end_batch() -> None:
        nonlocal in_batch
        for index, chunk in enumerate(chunks):
            if chunk:
                await projecting[index].decode(chunk)
                chunks[index] = []
        applied_at = datetime.now(UTC)
        writing.append(([await process.fold_and_write(applied_at) for process in projecting], in_batch))
        in_batch = 0

    async with contextlib.AsyncExitStack() as readers:
        opened = [_StreamReader(js, extent, chunk_size) for extent in extents]
        # Both consumers are created at once: each is a round trip to the server.
        await asyncio.gather(*(readers.enter_async_context(reader) for reader in opened))
        async for msg in _merged_by_time([reader.messages() for reader in opened]):
            metadata = msg.metadata
            index = hash(_firm_of(msg.subject)) % len(projecting)
            chunk = chunks[index]
            chunk.append((metadata.stream, metadata.sequence.stream, msg.data))
            result.messages += 1
            in_batch += 1
            if len(chunk) >= chunk_size:
                await projecting[index].decode(chunk)
                chunks[index] = []
                await account(every=False)
            # A batch also ends a little before the last message: folding and writing what
            # comes after the last read is all the reading cannot hide, so it is kept short.
            reaching_the_end = not in_last_batch and result.messages >= total - 2 * chunk_size
            in_last_batch = in_last_batch or reaching_the_end
            if in_batch >= batch_size or reaching_the_end:
                await end_batch()
        if in_batch:
            await end_batch()
        await account(every=True)
    result.elapsed_seconds = time.perf_counter() - started
    return result


def _canonical(value: Any) -> Any:
    """One spelling per value, whichever database and driver returned it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # UtcDateTime stores UTC; SQLite drops the zone
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        # Numeric(38, 2) comes back as 100.10 from PostgreSQL and may be 100.1 from SQLite.
        return format(value.normalize(), "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _table_of(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def _canonical_rows(table: Table, rows: Iterator[Any]) -> list[str]:
    compared = [column.name for column in table.columns if column.name not in NOT_COMPARED_COLUMNS]
    primary_key = [column.name for column in table.primary_key.columns]
    keyed: list[tuple[list[Any], str]] = []
    for row in rows:
        values = {name: _canonical(row._mapping[name]) for name in compared}
        for name in compared:
            if name in JSON_COLUMNS and values[name] is not None:
                # The document, not its spelling: a row written before the read model's JSON
                # came from pydantic's serializer has other spaces than a rebuilt one.
                values[name] = json.loads(values[name])
        # Sorted here, on canonical values: UUIDs sort differently in PostgreSQL and SQLite.
        keyed.append(([str(values[name]) for name in primary_key], json.dumps(values, sort_keys=True)))
    return [line for _, line in sorted(keyed)]


async def table_checksums(database_url: str) -> dict[str, str]:
    """SHA-256 of each projected table's rows, canonically serialized and sorted by key."""
    engine = create_engine(database_url)
    checksums: dict[str, str] = {}
    try:
        async with engine.connect() as connection:
            for model in PROJECTED_MODELS:
                table = _table_of(model)
                rows = await connection.execute(select(table))
                digest = hashlib.sha256()
                for line in _canonical_rows(table, iter(rows)):
                    digest.update(line.encode())
                    digest.update(b"\n")
                checksums[table.name] = digest.hexdigest()
    finally:
        await engine.dispose()
    return checksums
