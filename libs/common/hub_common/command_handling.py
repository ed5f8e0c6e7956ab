"""Answering commands (NATS request/reply): the one scaffold every service that answers uses.

Whatever the command, its answer is a ``CommandReply`` (hub_common.commands): the result or
a rejection, never both, and always an answer, so the gateway never waits for one that will
not come. What every service does alike lives here:

* a body that is not a valid command is refused as INVALID, naming the first bad field;
* the command's correlation id and firm are bound to every log line while it runs;
* a ``CommandRejected`` raised by a rule becomes the reply's rejection;
* anything else is logged with its stack and answered UNAVAILABLE ("try again").

``CommandServer`` adds what the services that own data share: one transaction per command,
a unique-row race refused as CONFLICT, and the outbox relay woken after each commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from faststream.nats import NatsBroker, NatsMessage
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.commands import (
    CommandRejected,
    Rejection,
    RejectionReason,
    encode_rejection,
    encode_result,
    refused,
    rejection,
)
from hub_common.db import transaction
from hub_common.i18n import N_
from hub_common.logging import bound_context, get_logger

logger = get_logger(__name__)

CommandT = TypeVar("CommandT", bound=BaseModel)
PreparedT = TypeVar("PreparedT")

# Commands of one subject one replica answers at once on PostgreSQL: one firm's command that
# waits on the outside (Entra naming a tenant, a webhook's host looked up) must not hold every
# other firm's behind it. On SQLite, one process's one writer, they take turns.
# They wait for a transaction below, not for a worker: a burst of one firm's commands must
# not fill the workers with commands that wait while other firms' queue behind them.
COMMANDS_AT_ONCE = 64
# Transactions commands hold at once, every subject together, and of them one firm's: each
# holds one of the process's database connections (the engine's pool holds up to 20), which
# the event consumers need too, and no firm may take them all. Commands of no firm (signing
# in, a client's own people) share only the overall limit.
TRANSACTIONS_AT_ONCE = 12
TRANSACTIONS_PER_FIRM = 3


def invalid_command(error: ValidationError) -> Rejection:
    """A body that is not the command it claims to be, refused at its first bad field."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return Rejection(reason=RejectionReason.INVALID, message=first["msg"], field=field)


def _log_context(subject: str, command: BaseModel) -> dict[str, Any]:
    firm_id = getattr(command, "firm_id", None)
    return {
        "command": subject,
        "correlation_id": getattr(command, "correlation_id", None),
        "firm_id": str(firm_id) if firm_id is not None else None,
    }


async def answer(
    body: bytes,
    model: type[CommandT],
    handle: Callable[[CommandT], Awaitable[BaseModel]],
    *,
    subject: str,
    owner: str,
    encode: Callable[[BaseModel], bytes] = encode_result,
    log_context: Callable[[CommandT], Mapping[str, Any]] | None = None,
) -> bytes:
    """The reply to one command: what ``handle`` returns, encoded, or why there is none.

    ``owner`` names the service in the reply when it fails unexpectedly ("The registry
    failed; try again"). ``encode`` may refuse too (a reply too large to travel).
    """
    try:
        command = model.model_validate_json(body)
    except ValidationError as error:
        return encode_rejection(invalid_command(error))
    context = _log_context(subject, command) | (dict(log_context(command)) if log_context else {})
    with bound_context(context):
        try:
            return encode(await handle(command))
        except CommandRejected as rejected:
            logger.info("command refused", reason=rejected.rejection.reason.value, message=rejected.rejection.message)
            return encode_rejection(rejected.rejection)
        except Exception:
            logger.exception("command failed")
            return encode_rejection(
                rejection(RejectionReason.UNAVAILABLE, N_("The %(owner)s failed; try again"), owner=owner)
            )


class CommandServer:
    """Serves the commands of a service that owns data, each in a transaction of its own.

    Replicas share the work through one queue group, so each command is answered once; on
    PostgreSQL each replica answers up to COMMANDS_AT_ONCE of one subject at a time (row
    locks keep the commands that touch the same rows in turn).
    """

    def __init__(
        self,
        broker: NatsBroker,
        sessions: async_sessionmaker[AsyncSession],
        *,
        queue: str,
        after_commit: Callable[[], None],
        owner: str | None = None,
        check: Callable[[AsyncSession, BaseModel], Awaitable[None]] | None = None,
    ) -> None:
        """``after_commit`` wakes the outbox relay; ``owner`` names the service in replies
        (the queue's name unless given); ``check`` runs first in each command's transaction
        and refuses what no command may do (the registry: an actor no longer of the firm)."""
        self._broker = broker
        self._sessions = sessions
        self._queue = queue
        self._after_commit = after_commit
        self._owner = owner or queue
        self._check = check
        bind = sessions.kw.get("bind")
        self._at_once = COMMANDS_AT_ONCE if bind is not None and bind.dialect.name == "postgresql" else 1
        self._transactions = asyncio.Semaphore(TRANSACTIONS_AT_ONCE)
        # Per firm: its places, and how many of its commands hold or wait for one.
        self._firms_transactions: dict[object, tuple[asyncio.Semaphore, int]] = {}

    def serve(self, subject: str, model: type[CommandT], handle: Callable[[CommandT], Awaitable[BaseModel]]) -> None:
        """Answer ``subject`` with ``handle``, which opens its own ``transaction`` where it writes."""

        @self._broker.subscriber(
            subject, queue=self._queue, title=f"{self._queue} {subject}", max_workers=self._at_once
        )
        async def reply(message: NatsMessage) -> bytes:
            return await answer(message.body, model, handle, subject=subject, owner=self._owner)

    def serve_in_transaction(
        self,
        subject: str,
        model: type[CommandT],
        run: Callable[[AsyncSession, CommandT], Awaitable[BaseModel]],
    ) -> None:
        """Answer ``subject`` with ``run``, inside one transaction committed before the reply."""

        async def handle(command: CommandT) -> BaseModel:
            return await self._in_transaction(command, run)

        self.serve(subject, model, handle)

    def serve_prepared_in_transaction(
        self,
        subject: str,
        model: type[CommandT],
        prepare: Callable[[CommandT], Awaitable[PreparedT]],
        run: Callable[[AsyncSession, CommandT, PreparedT], Awaitable[BaseModel]],
    ) -> None:
        """As ``serve_in_transaction``, ``prepare`` first, outside any transaction: slow work
        that needs no database (a name lookup of seconds) then holds none of the places
        every firm's commands take turns for, and ``run`` gets what it found."""

        async def handle(command: CommandT) -> BaseModel:
            prepared = await prepare(command)

            async def run_prepared(session: AsyncSession, command: CommandT) -> BaseModel:
                return await run(session, command, prepared)

            return await self._in_transaction(command, run_prepared)

        self.serve(subject, model, handle)

    async def _in_transaction(
        self, command: CommandT, run: Callable[[AsyncSession, CommandT], Awaitable[BaseModel]]
    ) -> BaseModel:
        async with self._turn(getattr(command, "firm_id", None)), self.transaction() as session:
            if self._check is not None:
                await self._check(session, command)
            return await run(session, command)

    @asynccontextmanager
    async def _turn(self, firm: object) -> AsyncIterator[None]:
        """A place among the transactions running at once, and among the firm's."""
        if firm is None:
            async with self._transactions:
                yield
            return
        mine, users = self._firms_transactions.get(firm, (asyncio.Semaphore(TRANSACTIONS_PER_FIRM), 0))
        self._firms_transactions[firm] = (mine, users + 1)
        try:
            async with mine, self._transactions:
                yield
        finally:
            mine, users = self._firms_transactions[firm]
            if users > 1:
                self._firms_transactions[firm] = (mine, users - 1)
            else:
                del self._firms_transactions[firm]  # nobody of the firm runs or waits

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed on success (then the relay is woken for the events it
        appended), rolled back on any error."""
        try:
            async with transaction(self._sessions) as session:
                yield session
        except IntegrityError as error:
            # A concurrent command won the race for the same unique row.
            raise refused(RejectionReason.CONFLICT, "Changed concurrently; try again") from error
        self._after_commit()
