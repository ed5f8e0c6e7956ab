"""Rebuilding the read model from the streams into a fresh database (invariant 3).

Both streams are read from their first message with ephemeral pull consumers that need no
acknowledgement, so a rebuild never touches the gateway's durables and JetStream keeps no
per-message state for it. Each stream is read up to the last sequence it held when the
rebuild started: a fixed end, so the rebuild finishes even while the hub keeps publishing.

Messages of the two streams are merged by the time JetStream stored them, which replays
the history in about the order the live gateway saw it, and applied in large batches
(thousands of events) through the same code as the live projection: the batch's rows are
taken, the events folded through the pure rules in memory (``rules.py``), and what changed
written in one statement per table, with one position per stream per batch
(``projection.changed_rows`` and ``projection.store``); a batch is written while the next
is read. There is one projection code path; a rebuild only takes bigger bites.
``table_checksums`` then compares a rebuilt model with a live one, table by table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import heapq
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import sqlalchemy
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, ReplayPolicy
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import SQLModel

from hub_common.db import create_engine, migrate, session_factory, sync_url, transaction
from hub_common.events import InvalidEvent, decode_event, prepare_decoding
from hub_common.logging import get_logger
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.readmodel.models import (
    AccountantRow,
    AlertRow,
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
from hub_gateway.readmodel.projection import ReadModelInMemory, store
from hub_gateway.readmodel.state import StoredEvent

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
    AlertRow,
    ProjectionPosition,
)
# When the projection ran, not what it projected: a rebuild necessarily differs here. And a
# guard no page shows: when a client's companies were last listed in full, which rows kept
# from before migration 0019 lack until the client's next discovery (a removed client's
# forever), and a replica applying an older full list after a newer one-company list skips.
NOT_COMPARED_COLUMNS = frozenset({"snapshot_applied_at", "companies_listed_at"})
# Text columns holding a JSON document, compared as documents.
JSON_COLUMNS = frozenset({"card_json", "failure_json", "figures_json", "result_json"})

# Events folded and written per transaction: large, so loading and writing the rows a batch
# touches (a few statements whatever its size) costs little per event.
DEFAULT_BATCH_SIZE = 5000
# Messages handed from the NATS client to the reader at a time.
_CHUNK_SIZE = 100
# Chunks received ahead of the reader, per stream: enough to go on with while flow control
# resumes a paused server (nats-py answers it within 250 ms).
_CHUNKS_AHEAD = 50
# What nats-py may hold beyond that before the reader takes it (flow control bounds it
# well below these).
_PENDING_MESSAGES = 100_000
_PENDING_BYTES = 256 * 1024 * 1024
# How long a stream may stay silent before the reader asks whether the rest of it is gone
# (a message below the end sequence may have been removed by the stream's limits).
_SILENCE_SECONDS = 2.0
# How long the rest of a stream that is still there may not come before the rebuild gives
# up, failing: nats-py restarts a lost ordered consumer (a stream leader moving, a NATS
# restart) after two missed heartbeats, 10 s, and a rebuild that ended there instead
# looked complete.
_STALL_LIMIT_SECONDS = 120.0


class RebuildIncomplete(RuntimeError):
    """A stream stopped sending before its end, though the rest of it is still there."""


class AuditLogTruncated(RuntimeError):
    """The audit log no longer starts at its first event: its limits removed the oldest."""


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


async def _extent(js: JetStreamContext, stream: str, up_to: int | None) -> _StreamExtent:
    """The part of the stream to read: to its end, or to ``up_to`` (where a live model is)."""
    state = (await js.stream_info(stream)).state
    last = state.last_seq if up_to is None else min(state.last_seq, up_to)
    # Counted by the stream when it is read whole; up to a sequence, an estimate for the
    # progress bar only.
    messages = state.messages if last == state.last_seq else max(0, last - state.first_seq + 1)
    return _StreamExtent(stream=stream, messages=messages, last_sequence=last)


class _StreamReader:
    """One stream's messages in stream order, up to its end, received ahead in chunks.

    An ordered push consumer: the server sends the stream as fast as the reader takes it,
    with no request per batch, and nats-py restarts it from the right place if a message
    goes missing. When the reader falls behind (``_CHUNKS_AHEAD`` chunks waiting), taking
    the next message waits, and JetStream's flow control pauses the server.
    """

    def __init__(self, js: JetStreamContext, extent: _StreamExtent) -> None:
        self._js = js
        self._extent = extent
        self._chunks: asyncio.Queue[list[Msg] | None] = asyncio.Queue(maxsize=_CHUNKS_AHEAD)
        self._chunk: list[Msg] = []
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_received = time.monotonic()
        self._last_sequence_received = 0
        self._stalled_since: float | None = None
        self._failure: RebuildIncomplete | None = None
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
        sequence = msg.metadata.sequence.stream
        self._last_sequence_received = sequence
        if sequence <= self._extent.last_sequence:
            self._chunk.append(msg)
        if sequence >= self._extent.last_sequence:
            await self._end()
        elif len(self._chunk) >= _CHUNK_SIZE:
            chunk, self._chunk = self._chunk, []
            await self._chunks.put(chunk)
        # After the chunk is taken: while the reader is behind, the server is paused by us,
        # which is no silence of the stream's.
        self._last_received = time.monotonic()

    async def _end_when_silent(self) -> None:
        """End the stream if nothing comes for a while although the reader keeps up and its
        last messages were removed by the stream's limits since the rebuild started; while
        they are still there, wait for them (up to ``_STALL_LIMIT_SECONDS``, then fail)."""
        while not self._ended:
            await asyncio.sleep(_SILENCE_SECONDS / 4)
            if self._chunks.full():
                self._last_received = time.monotonic()
                self._stalled_since = None
            elif time.monotonic() - self._last_received <= _SILENCE_SECONDS:
                self._stalled_since = None
            elif await self._rest_removed():
                logger.warning(
                    "stream ended before its last sequence; the stream's limits removed the rest",
                    stream=self._extent.stream,
                    last_sequence=self._extent.last_sequence,
                )
                await self._end()
            elif self._stalled_since is None:
                self._stalled_since = time.monotonic()
                logger.warning(
                    "stream stopped sending before its end; waiting for the rest",
                    stream=self._extent.stream,
                    received_up_to=self._last_sequence_received,
                    last_sequence=self._extent.last_sequence,
                )
            elif time.monotonic() - self._stalled_since > _STALL_LIMIT_SECONDS:
                self._failure = RebuildIncomplete(
                    f"{self._extent.stream} stopped sending at sequence {self._last_sequence_received} of"
                    f" {self._extent.last_sequence} for {_STALL_LIMIT_SECONDS:.0f} s, though the rest is there"
                )
                await self._end()

    async def _rest_removed(self) -> bool:
        """Whether no message after the last one received, up to the end, is left."""
        try:
            following = await self._js.get_msg(
                self._extent.stream, seq=self._last_sequence_received + 1, subject="hub.>", next=True
            )
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError):
            return False  # NATS itself is away: the rest is not known to be gone
        return following.seq is None or following.seq > self._extent.last_sequence

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
        if self._failure is not None:
            raise self._failure


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


def _ensure_empty(database_url: str) -> None:
    """Refuse a target holding any table: a rebuild starts from an empty database (one an
    interrupted rebuild left behind included: drop it and create it again)."""
    url = sync_url(database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise RebuildTargetNotEmpty(
            f"the target database is not empty ({len(tables)} tables, such as {sorted(tables)[0]!r}): a rebuild"
            " goes into an empty database (check that --target is not the live one; drop and create it again"
            " after an interrupted rebuild)"
        )


async def rebuild(
    js: JetStreamContext,
    database_url: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    up_to: Mapping[str, int] | None = None,
) -> RebuildResult:
    """Project both streams, from their start, into the empty database at ``database_url``.

    ``progress(applied, total)`` is called after each written batch; ``total`` counts the
    messages the streams held at the start. ``up_to``: the last sequence to read of each
    stream (a live model's positions, to compare with it while the hub keeps publishing);
    by default, each stream's end when the rebuild starts.
    """
    # Checked before migrating: a live database named by mistake is left as it is, not
    # migrated to this release outside its rollout.
    await asyncio.to_thread(_ensure_empty, database_url)
    await _ensure_whole_audit_log(js)
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        prepare_decoding()
        with _collecting_less():
            result = await _project_streams(js, sessions, batch_size, progress, up_to)
    finally:
        await engine.dispose()
    logger.info(
        "read model rebuilt",
        messages=result.messages,
        invalid=result.invalid,
        elapsed_seconds=round(result.elapsed_seconds, 3),
        messages_per_second=round(result.messages_per_second),
    )
    return result


async def _ensure_whole_audit_log(js: JetStreamContext) -> None:
    """Refuses a rebuild from an audit log its limits have cut (HUB_AUDIT_MAX_AGE_SECONDS):
    nothing deletes or purges HUB_EVENTS, so a first sequence past 1 means its oldest events
    are gone, and with them the firms, accountants and clients they made. The model rebuilt
    would silently lack them."""
    state = (await js.stream_info(EVENTS_STREAM)).state
    if state.last_seq > 0 and state.first_seq > 1:
        raise AuditLogTruncated(
            f"the audit log ({EVENTS_STREAM}) starts at sequence {state.first_seq}: its limits "
            f"(HUB_AUDIT_MAX_AGE_SECONDS) removed the {state.first_seq - 1} events before it, and a read model "
            "rebuilt from the rest would lack the firms, accountants and clients they made. Restore the "
            "gateway's database from its backup instead"
        )


async def _project_streams(
    js: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    up_to: Mapping[str, int] | None,
) -> RebuildResult:
    """Read both streams merged by time, decode each message, and fold and write them in
    batches, each written while the next is read; timed from the first read to the last
    batch written (the schema migration is not)."""
    result = RebuildResult()
    started = time.perf_counter()
    extents = list(
        await asyncio.gather(
            *(_extent(js, stream, None if up_to is None else up_to.get(stream, 0)) for stream in REBUILT_STREAMS)
        )
    )
    result.end_sequences = {extent.stream: extent.last_sequence for extent in extents}
    total = sum(extent.messages for extent in extents)
    # The rebuild is the only writer of its empty target: a batch's rows come from here.
    target = ReadModelInMemory()
    applied = 0

    async def write(batch: list[StoredEvent[Any]], messages: int) -> None:
        nonlocal applied
        written = target.fold(batch, datetime.now(UTC))
        async with transaction(sessions) as session:
            await store(session, written)
        applied += messages
        if progress is not None:
            progress(applied, total)

    writing: asyncio.Task[None] | None = None
    try:
        async with contextlib.AsyncExitStack() as readers:
            opened = [_StreamReader(js, extent) for extent in extents]
            # Both consumers are created at once: each is a round trip to the server.
            await asyncio.gather(*(readers.enter_async_context(reader) for reader in opened))
            batch: list[StoredEvent[Any]] = []
            counted = 0  # messages read into ``batch``, invalid ones included
            async for msg in _merged_by_time([reader.messages() for reader in opened]):
                result.messages += 1
                counted += 1
                metadata = msg.metadata
                try:
                    batch.append(
                        StoredEvent(
                            decode_event(msg.data, subject=msg.subject), metadata.stream, metadata.sequence.stream
                        )
                    )
                except InvalidEvent:
                    # The live consumers dead-letter these without advancing their position,
                    # so skipping them keeps the rebuilt positions equal to the live ones.
                    result.invalid += 1
                if len(batch) >= batch_size:
                    if writing is not None:
                        await writing  # one batch at a time, in order
                    writing = asyncio.create_task(write(batch, counted))
                    batch, counted = [], 0
            if writing is not None:
                await writing
                writing = None
            if counted:
                await write(batch, counted)
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
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


async def projection_positions(database_url: str) -> dict[str, int]:
    """How far a read model has applied each stream (its last sequence applied)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(_table_of(ProjectionPosition)))
            return {row.stream: row.sequence for row in rows}
    finally:
        await engine.dispose()


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
