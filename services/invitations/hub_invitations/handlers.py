"""The invitations service's command handlers (NATS request/reply from the gateway)."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.command_handling import CommandServer
from hub_common.logging import get_logger
from hub_invitations import service
from hub_invitations.mailer import InvitationMailer
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)

QUEUE_GROUP = "invitations"


def register_command_handlers(
    broker: NatsBroker,
    sessions: async_sessionmaker[AsyncSession],
    notify_relay: Callable[[], None],
    mailer: InvitationMailer,
    settings: InvitationsSettings,
    access_removed_at: service.AccessRemovedAt,
) -> None:
    server = CommandServer(broker, sessions, queue=QUEUE_GROUP, after_commit=notify_relay, owner="invitations service")

    async def raise_invitation(command: commands.RaiseInvitation) -> commands.InvitationRaised:
        async with server.transaction() as session:
            raised = await service.raise_invitation(session=session, command=command, settings=settings)
        logger.info("invitation raised", invitation_id=str(raised.invitation_id), tenant=command.tenant)
        # Only once committed: a mail must never announce an invitation that does not exist.
        mailer.send_soon(raised.mail)
        return commands.InvitationRaised(invitation_id=raised.invitation_id)

    async def accept_invitation(command: commands.AcceptInvitation) -> commands.InvitationAcceptedResult:
        try:
            async with server.transaction() as session:
                result = await service.accept_invitation(
                    session=session, command=command, settings=settings, access_removed_at=access_removed_at
                )
        except service.AcceptanceRefused as refused:
            await record_refused_attempt(refused, command)
            raise
        logger.info("invitation accepted", invitation_id=str(result.invitation_id))
        return result

    async def record_refused_attempt(refused: service.AcceptanceRefused, command: commands.AcceptInvitation) -> None:
        # The refusal's own transaction was rolled back; its audit record gets a new one.
        try:
            async with server.transaction() as session:
                recorded = await service.record_rejection(
                    session=session, attempt=refused.attempt, command=command, reason=refused.rejection.message
                )
            if not recorded:
                logger.warning(
                    "refused acceptance not recorded: the invitation's hourly allowance of records is spent",
                    invitation_id=str(refused.attempt.invitation_id),
                    accountant_id=str(command.accountant_id),
                )
        except Exception:
            # The refusal stands either way; only its audit record is missing.
            logger.exception("recording a refused acceptance failed")

    async def list_tenant_invitations(command: commands.ListTenantInvitations) -> commands.TenantInvitations:
        async with server.transaction() as session:
            return await service.list_tenant_invitations(session=session, command=command)

    async def withdraw_invitation(command: commands.WithdrawInvitation) -> commands.InvitationWithdrawnResult:
        async with server.transaction() as session:
            withdrawn = await service.withdraw_invitation(session=session, command=command)
        logger.info("invitation withdrawn by the client", invitation_id=str(withdrawn.invitation_id))
        return withdrawn

    server.serve(commands.RAISE_INVITATION, commands.RaiseInvitation, raise_invitation)
    server.serve(commands.ACCEPT_INVITATION, commands.AcceptInvitation, accept_invitation)
    server.serve(commands.LIST_TENANT_INVITATIONS, commands.ListTenantInvitations, list_tenant_invitations)
    server.serve(commands.WITHDRAW_INVITATION, commands.WithdrawInvitation, withdraw_invitation)
