"""Live updates: the projection announces what changed; every open page hears it.

The replica that applies a batch publishes, after its transaction commits, which clients
of which firm changed, on core NATS (``live.<firm_id>.changes``: not a JetStream subject,
nothing is stored). Every gateway replica subscribes and hands the notice to the
server-sent-event streams of that firm's open pages, so a page connected to any replica
hears about a change projected by any other. A page that misses a notice (its own
reconnect, a full queue, or this replica's reconnect to NATS, during which notices were
lost) asks for its rows again, so a notice never needs to be delivered twice.

The rows a notice brings are read once for all the streams that got the same notice
(``SharedReads``): one firm's twenty open tabs must not run twenty reads of every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TypeVar, cast

import anyio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from starlette.responses import StreamingResponse
from starlette.types import Message, Send

from hub_common import metrics
from hub_common.logging import get_logger
from hub_gateway.readmodel.state import Changes

logger = get_logger(__name__)

T = TypeVar("T")

LIVE_SUBJECTS = "live.*.changes"
# Notices a slow page may have waiting before it is told to reload its rows instead: each
# waits as a copy of its own, so a page that stops reading holds no more than a few.
QUEUE_LIMIT = 10
# A change of more clients than this is told as "reload": its rows, read and encoded for
# each open page of the firm, would be one large event per stream.
ROWS_PER_EVENT_AT_MOST = 500
# How long one event may take to leave for the page: a page that stops reading (its
# connection kept open, nothing read) would otherwise hold its stream, its place among the
# firm's and the replica's streams, and what waits for it, for as long as the connection
# lives, even after its sign-in ended.
SEND_WITHIN_SECONDS = 30.0
# Database reads the live streams of a replica make at once (a stream's preferences, the
# rows of a notice): a firm with a thousand open pages, changing all day, would otherwise
# take every connection of the pool (20) that every firm's requests need.
LIVE_READS_AT_ONCE = 4
# Open streams one accountant may hold on one replica (tabs, windows); more is refused, so
# nobody can tie up a replica's memory with streams.
STREAMS_PER_ACCOUNTANT = 20
# And one firm (its accountants together: a firm could invite accounts to open more), and
# every firm together: each stream holds a connection and its queue for as long as it is open.
STREAMS_PER_FIRM = 1000
STREAMS_PER_REPLICA = 5000


class Crowded(StrEnum):
    """Whose open streams are as many as a replica takes."""

    ACCOUNTANT = "accountant"
    FIRM = "firm"
    REPLICA = "replica"


class TooManyStreams(Exception):
    def __init__(self, crowded: Crowded) -> None:
        super().__init__(crowded.value)
        self.crowded = crowded


class LiveResponse(StreamingResponse):
    """A stream of server-sent events whose every send must leave within ``send_within``
    seconds; a page that stops reading is ended (its stream closed, its place given back)."""

    def __init__(self, content: AsyncGenerator[str, None], *, send_within: float, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._events = content
        self._send_within = send_within

    async def stream_response(self, send: Send) -> None:
        async def send_in_time(message: Message) -> None:
            with anyio.fail_after(self._send_within):
                await send(message)

        try:
            await super().stream_response(send_in_time)
        except TimeoutError:
            logger.info("live stream not read by its page; ended", seconds=self._send_within)
            # Closed here, so its cleanup (the place it holds) runs now, not with the connection.
            await self._events.aclose()


def _subject(firm_id: uuid.UUID) -> str:
    return f"live.{firm_id}.changes"


@dataclass
class Notice:
    client_ids: set[uuid.UUID] = field(default_factory=set)
    # Which notice this replica heard (the newest merged in), counted from its start: two
    # streams holding the same number and clients hold the same change.
    heard: int = 0
    new_failures: bool = False
    # The page fell behind: it must reload rather than patch rows.
    reload: bool = False
    # This replica is stopping: the stream ends and the page reconnects (to another replica).
    end: bool = False
    # These accountants signed out or lost a token: their streams check their sign-in now
    # rather than at their next keep-alive (nobody else's stream pays for a check).
    sign_in_changed_of: set[uuid.UUID] = field(default_factory=set)

    def merge(self, other: Notice) -> None:
        self.client_ids |= other.client_ids
        self.heard = max(self.heard, other.heard)
        self.new_failures |= other.new_failures
        self.reload |= other.reload
        self.end |= other.end
        self.sign_in_changed_of |= other.sign_in_changed_of

    def copy(self) -> Notice:
        """Each stream gets its own: a stream merges what waits into the notice it took."""
        return replace(self, client_ids=set(self.client_ids), sign_in_changed_of=set(self.sign_in_changed_of))

    @property
    def changes_rows(self) -> bool:
        """Whether the page has something to be told (else it was only a sign-in check)."""
        return bool(self.client_ids) or self.new_failures or self.reload or self.end


def _fell_behind(queue: asyncio.Queue[Notice], notice: Notice) -> None:
    """Drop what waits and ask the page to reload, keeping an end the server asked for and
    whose sign-in to check."""
    kept = Notice(reload=True, end=notice.end, sign_in_changed_of=set(notice.sign_in_changed_of))
    while not queue.empty():
        waiting = queue.get_nowait()
        kept.end |= waiting.end
        kept.sign_in_changed_of |= waiting.sign_in_changed_of
    queue.put_nowait(kept)


# Reads kept for the streams still on their way to them: more than the distinct notices a
# replica's streams take at once; a finished one is kept this long (the streams that got its
# notice take it within moments), not until newer notices push it out.
SHARED_READS = 64
KEEP_FINISHED_SECONDS = 5.0


class SharedReads:
    """One read per distinct key, shared by every stream that asks for it meanwhile.

    A key names a firm's change as heard here (``Notice.heard``) and what the answer
    depends on, so a later change is never answered with an earlier read.
    """

    def __init__(self) -> None:
        self._reads: dict[Hashable, asyncio.Task[object]] = {}

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        task: asyncio.Task[object] | None = self._reads.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(read())
            task.add_done_callback(lambda done: self._finished(key, done))
            self._reads[key] = task
            while len(self._reads) > SHARED_READS:
                del self._reads[next(iter(self._reads))]
        # One stream going away (its page closed) must not cancel the others' read.
        return cast(T, await asyncio.shield(task))

    def _finished(self, key: Hashable, task: asyncio.Task[object]) -> None:
        # Retrieved here too: every stream waiting for it may have gone meanwhile.
        if not task.cancelled():
            task.exception()
        asyncio.get_running_loop().call_later(KEEP_FINISHED_SECONDS, self._forget, key, task)

    def _forget(self, key: Hashable, task: asyncio.Task[object]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]


class LiveUpdates:
    def __init__(
        self, nats: Client, *, per_firm: int = STREAMS_PER_FIRM, per_replica: int = STREAMS_PER_REPLICA
    ) -> None:
        self._nats = nats
        self._listeners: dict[uuid.UUID, set[asyncio.Queue[Notice]]] = {}
        self._notices_heard = itertools.count(1)
        self.shared_reads = SharedReads()
        self.reads = asyncio.Semaphore(LIVE_READS_AT_ONCE)
        self._per_firm = per_firm
        self._per_replica = per_replica
        self._streams_of: dict[uuid.UUID, int] = {}
        self._streams_of_firm: dict[uuid.UUID, int] = {}
        self._streams = 0
        self._subscription: Subscription | None = None
        # Set once the server stops: a stream that starts listening after it ends at once.
        self.ending = False

    async def start(self) -> None:
        self._subscription = await self._nats.subscribe(LIVE_SUBJECTS, cb=self._heard)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def announce(self, changes: Changes) -> None:
        """Tell every replica what a committed batch changed (best effort: pages resync)."""
        # A firm with new failures but no changed row (a Test Client URL of a card not yet
        # saved) is told too: its Check Errors pages list the failure.
        for firm_id in changes.clients_by_firm.keys() | changes.firms_with_new_failures:
            client_ids = changes.clients_by_firm.get(firm_id, set())
            notice = {
                "client_ids": sorted(str(client_id) for client_id in client_ids),
                "new_failures": firm_id in changes.firms_with_new_failures,
            }
            await self._publish(firm_id, notice)
        for firm_id, accountant_id in changes.sign_ins_ended:
            await self.announce_sign_in_change(firm_id, accountant_id)

    async def announce_sign_in_change(self, firm_id: uuid.UUID, accountant_id: uuid.UUID) -> None:
        """After a sign-out, a revoked token or a removal (committed): the accountant's streams on every
        replica check their sign-in now, so one that lost it ends within moments."""
        notice = {"client_ids": [], "new_failures": False, "sign_in_changed_of": [str(accountant_id)]}
        await self._publish(firm_id, notice)

    async def _publish(self, firm_id: uuid.UUID, notice: dict[str, object]) -> None:
        try:
            await self._nats.publish(_subject(firm_id), json.dumps(notice).encode())
        except Exception as error:  # a live notice is never worth failing what announced it
            logger.warning("live notice not sent", firm_id=str(firm_id), error=repr(error))

    async def _heard(self, msg: Msg) -> None:
        try:
            firm_id = uuid.UUID(msg.subject.split(".")[1])
            body = json.loads(msg.data)
            notice = Notice(
                client_ids={uuid.UUID(value) for value in body["client_ids"]},
                new_failures=bool(body.get("new_failures")),
                sign_in_changed_of={uuid.UUID(value) for value in body.get("sign_in_changed_of", [])},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            logger.warning("malformed live notice ignored", subject=msg.subject)
            return
        listeners = self._listeners.get(firm_id)
        if not listeners:
            return
        notice.heard = next(self._notices_heard)
        for queue in listeners:
            try:
                queue.put_nowait(notice.copy())
            except asyncio.QueueFull:
                # Too far behind to patch.
                _fell_behind(queue, notice)

    def resync(self) -> None:
        """Every open page reads its rows again: this replica was away from NATS, and the
        notices sent meanwhile are lost (core NATS keeps nothing)."""
        for queues in self._listeners.values():
            for queue in queues:
                _fell_behind(queue, Notice())

    def end_streams(self) -> None:
        """Ask every open stream to end: a stopping server waits for open responses, and a
        live stream never ends by itself."""
        self.ending = True
        for queues in self._listeners.values():
            for queue in queues:
                while queue.full():
                    queue.get_nowait()
                queue.put_nowait(Notice(end=True))

    def crowded(self, accountant_id: uuid.UUID, firm_id: uuid.UUID) -> Crowded | None:
        """Whose streams leave no room for one more of the accountant's, if anyone's."""
        if self._streams_of.get(accountant_id, 0) >= STREAMS_PER_ACCOUNTANT:
            return Crowded.ACCOUNTANT
        if self._streams_of_firm.get(firm_id, 0) >= self._per_firm:
            return Crowded.FIRM
        if self._streams >= self._per_replica:
            return Crowded.REPLICA
        return None

    def reserve(self, accountant_id: uuid.UUID, firm_id: uuid.UUID) -> None:
        """Count one more open stream of the accountant, or refuse it (TooManyStreams)."""
        crowded = self.crowded(accountant_id, firm_id)
        if crowded is not None:
            raise TooManyStreams(crowded)
        self._streams_of[accountant_id] = self._streams_of.get(accountant_id, 0) + 1
        self._streams_of_firm[firm_id] = self._streams_of_firm.get(firm_id, 0) + 1
        self._streams += 1
        metrics.live_streams_open.inc()

    def release(self, accountant_id: uuid.UUID, firm_id: uuid.UUID) -> None:
        metrics.live_streams_open.dec()
        self._streams -= 1
        for counts, key in ((self._streams_of, accountant_id), (self._streams_of_firm, firm_id)):
            remaining = counts.get(key, 1) - 1
            if remaining > 0:
                counts[key] = remaining
            else:
                counts.pop(key, None)

    @contextlib.contextmanager
    def listen(self, firm_id: uuid.UUID) -> Iterator[asyncio.Queue[Notice]]:
        queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._listeners.setdefault(firm_id, set()).add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(firm_id, set())
            listeners.discard(queue)
            if not listeners:
                self._listeners.pop(firm_id, None)
