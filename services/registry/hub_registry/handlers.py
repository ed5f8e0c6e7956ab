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
    notify_relay: Callable[[], None],
    settings: RegistrySettings,
    directory: TenantDirectory,
) -> None:
    def command_handler(
        subject: str,
        model: type[CommandT],
        run: Callable[[AsyncSession, CommandT], Awaitable[BaseModel]],
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
            with bound_context({"correlation_id": correlation_id, "command": subject}):
                try:
                    async with transaction(sessions) as session:
                        result = await run(session, command)
                except service.Refused as refused:
                    logger.info("command refused", reason=refused.rejection.message)
                    return commands.encode_rejection(refused.rejection)
                except IntegrityError:
                    # A concurrent command won the race for the same unique row.
                    return _rejected(commands.RejectionReason.CONFLICT, "Changed concurrently; try again")
                except Exception:
                    logger.exception("command failed")
                    return _rejected(commands.RejectionReason.UNAVAILABLE, "The registry failed; try again")
            notify_relay()
            return commands.encode_result(result)

    async def ensure_accountant(session: AsyncSession, command: commands.EnsureAccountant) -> BaseModel:
        return await service.ensure_accountant(session=session, command=command, settings=settings, directory=directory)

    async def list_firm_invitations(session: AsyncSession, command: commands.ListFirmInvitations) -> BaseModel:
        return await service.list_firm_invitations(session=session, command=command)

    async def add_client(session: AsyncSession, command: commands.AddClient) -> BaseModel:
        client_id, granted = await service.add_client(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ClientCreated(client_id=client_id, access_granted=granted)

    async def update_client(session: AsyncSession, command: commands.UpdateClient) -> BaseModel:
        await service.update_client(session=session, command=command, settings=settings, directory=directory)
        return commands.ClientCreated(client_id=command.client_id)

    async def remove_client(session: AsyncSession, command: commands.RemoveClient) -> BaseModel:
        await service.remove_client(session=session, command=command)
        return commands.ClientCreated(client_id=command.client_id)

    async def request_refresh(session: AsyncSession, command: commands.RequestRefresh) -> BaseModel:
        refresh_ids = await service.request_refresh(session=session, command=command)
        return commands.RefreshStarted(refresh_ids=refresh_ids)

    async def test_connection(session: AsyncSession, command: commands.TestConnection) -> BaseModel:
        test_id = await service.test_connection(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ConnectionTestStarted(test_id=test_id)

    async def invite_colleague(session: AsyncSession, command: commands.InviteColleague) -> BaseModel:
        return await service.invite_colleague(session=session, command=command)

    async def grant_access(session: AsyncSession, command: commands.GrantTenantAccess) -> BaseModel:
        return await service.grant_tenant_access(session=session, command=command)

    async def revoke_access(session: AsyncSession, command: commands.RevokeTenantAccess) -> BaseModel:
        return await service.revoke_tenant_access(session=session, command=command)

    command_handler(commands.INVITE_COLLEAGUE, commands.InviteColleague, invite_colleague)
    command_handler(commands.TEST_CONNECTION, commands.TestConnection, test_connection)
    command_handler(commands.ENSURE_ACCOUNTANT, commands.EnsureAccountant, ensure_accountant)
    command_handler(commands.LIST_FIRM_INVITATIONS, commands.ListFirmInvitations, list_firm_invitations)
    command_handler(commands.ADD_CLIENT, commands.AddClient, add_client)
    command_handler(commands.UPDATE_CLIENT, commands.UpdateClient, update_client)
    command_handler(commands.REMOVE_CLIENT, commands.RemoveClient, remove_client)
    command_handler(commands.REQUEST_REFRESH, commands.RequestRefresh, request_refresh)

    async def list_grants(session: AsyncSession, command: commands.ListTenantGrants) -> BaseModel:
        return await service.list_tenant_grants(session=session, command=command)

    async def withdraw_access(session: AsyncSession, command: commands.WithdrawTenantAccess) -> BaseModel:
        return await service.withdraw_tenant_access(session=session, command=command)

    command_handler(commands.GRANT_TENANT_ACCESS, commands.GrantTenantAccess, grant_access)
    command_handler(commands.LIST_TENANT_GRANTS, commands.ListTenantGrants, list_grants)
    command_handler(commands.WITHDRAW_TENANT_ACCESS, commands.WithdrawTenantAccess, withdraw_access)
    command_handler(commands.REVOKE_TENANT_ACCESS, commands.RevokeTenantAccess, revoke_access)
