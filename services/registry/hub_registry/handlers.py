"""The registry's command handlers (NATS request/reply from the gateway)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream.nats import NatsBroker, NatsMessage
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.db import transaction
from hub_common.entra import TenantDirectory
from hub_common.logging import bound_context, get_logger
from hub_registry import service
from hub_registry.settings import RegistrySettings

logger = get_logger(__name__)

CommandT = TypeVar("CommandT", bound=BaseModel)
QUEUE_GROUP = "registry"


def _rejected(reason: commands.RejectionReason, message: str, field: str | None = None) -> bytes:
    return commands.encode_rejection(commands.Rejection(reason=reason, message=message, field=field))


def register_command_handlers(
    broker: NatsBroker,
    sessions: async_sessionmaker[AsyncSession],
    after_commit: Callable[[service.Effects], Awaitable[None]],
    settings: RegistrySettings,
    directory: TenantDirectory,
) -> None:
    """``after_commit`` mirrors what a command changed (grants) and wakes the outbox relay."""

    def command_handler(
        subject: str,
        model: type[CommandT],
        run: Callable[[AsyncSession, CommandT, service.Effects], Awaitable[BaseModel]],
    ) -> None:
        @broker.subscriber(subject, queue=QUEUE_GROUP, title=f"registry {subject}")
        async def handle(message: NatsMessage) -> bytes:
            try:
                command = model.model_validate_json(message.body)
            except ValidationError as error:
                first = error.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or None
                return _rejected(commands.RejectionReason.INVALID, first["msg"], field)
            correlation_id = getattr(command, "correlation_id", None)
            effects = service.Effects.none()
            with bound_context({"correlation_id": correlation_id, "command": subject}):
                try:
                    async with transaction(sessions) as session:
                        result = await run(session, command, effects)
                except service.Refused as refused:
                    logger.info("command refused", reason=refused.rejection.message)
                    return commands.encode_rejection(refused.rejection)
                except IntegrityError:
                    # A concurrent command won the race for the same unique row.
                    return _rejected(commands.RejectionReason.CONFLICT, "Changed concurrently; try again")
                except Exception:
                    logger.exception("command failed")
                    return _rejected(commands.RejectionReason.UNAVAILABLE, "The registry failed; try again")
                await after_commit(effects)
            return commands.encode_result(result)

    async def ensure_accountant(
        session: AsyncSession, command: commands.EnsureAccountant, effects: service.Effects
    ) -> BaseModel:
        return await service.ensure_accountant(session=session, command=command, settings=settings, directory=directory)

    async def list_firm_invitations(
        session: AsyncSession, command: commands.ListFirmInvitations, effects: service.Effects
    ) -> BaseModel:
        return await service.list_firm_invitations(session=session, command=command)

    async def add_client(session: AsyncSession, command: commands.AddClient, effects: service.Effects) -> BaseModel:
        client_id, granted = await service.add_client(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ClientCreated(client_id=client_id, access_granted=granted)

    async def update_client(
        session: AsyncSession, command: commands.UpdateClient, effects: service.Effects
    ) -> BaseModel:
        await service.update_client(session=session, command=command, settings=settings, directory=directory)
        return commands.ClientCreated(client_id=command.client_id)

    async def remove_client(
        session: AsyncSession, command: commands.RemoveClient, effects: service.Effects
    ) -> BaseModel:
        await service.remove_client(session=session, command=command)
        return commands.ClientCreated(client_id=command.client_id)

    async def request_refresh(
        session: AsyncSession, command: commands.RequestRefresh, effects: service.Effects
    ) -> BaseModel:
        refresh_ids = await service.request_refresh(session=session, command=command)
        return commands.RefreshStarted(refresh_ids=refresh_ids)

    async def test_connection(
        session: AsyncSession, command: commands.TestConnection, effects: service.Effects
    ) -> BaseModel:
        test_id = await service.test_connection(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ConnectionTestStarted(test_id=test_id)

    async def invite_colleague(
        session: AsyncSession, command: commands.InviteColleague, effects: service.Effects
    ) -> BaseModel:
        return await service.invite_colleague(session=session, command=command)

    async def grant_access(
        session: AsyncSession, command: commands.GrantTenantAccess, effects: service.Effects
    ) -> BaseModel:
        return await service.grant_tenant_access(session=session, command=command, effects=effects)

    async def revoke_access(
        session: AsyncSession, command: commands.RevokeTenantAccess, effects: service.Effects
    ) -> BaseModel:
        return await service.revoke_tenant_access(session=session, command=command, effects=effects)

    command_handler(commands.INVITE_COLLEAGUE, commands.InviteColleague, invite_colleague)
    command_handler(commands.TEST_CONNECTION, commands.TestConnection, test_connection)
    command_handler(commands.ENSURE_ACCOUNTANT, commands.EnsureAccountant, ensure_accountant)
    command_handler(commands.LIST_FIRM_INVITATIONS, commands.ListFirmInvitations, list_firm_invitations)
    command_handler(commands.ADD_CLIENT, commands.AddClient, add_client)
    command_handler(commands.UPDATE_CLIENT, commands.UpdateClient, update_client)
    command_handler(commands.REMOVE_CLIENT, commands.RemoveClient, remove_client)
    command_handler(commands.REQUEST_REFRESH, commands.RequestRefresh, request_refresh)
    command_handler(commands.GRANT_TENANT_ACCESS, commands.GrantTenantAccess, grant_access)
    command_handler(commands.REVOKE_TENANT_ACCESS, commands.RevokeTenantAccess, revoke_access)
