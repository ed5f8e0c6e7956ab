"""The invitations service's command handlers (NATS request/reply from the gateway)."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker, NatsMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.db import transaction
from hub_common.logging import bound_context, get_logger
from hub_invitations import service
from hub_invitations.mailer import InvitationMailer
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)

QUEUE_GROUP = "invitations"


def _rejected(reason: commands.RejectionReason, message: str, field: str | None = None) -> bytes:
    return commands.encode_rejection(commands.Rejection(reason=reason, message=message, field=field))


def _invalid(error: ValidationError) -> bytes:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return _rejected(commands.RejectionReason.INVALID, first["msg"], field)


def register_command_handlers(
    broker: NatsBroker,
    sessions: async_sessionmaker[AsyncSession],
    notify_relay: Callable[[], None],
    mailer: InvitationMailer,
    settings: InvitationsSettings,
) -> None:
    @broker.subscriber(commands.RAISE_INVITATION, queue=QUEUE_GROUP, title=f"invitations {commands.RAISE_INVITATION}")
    async def raise_invitation(message: NatsMessage) -> bytes:
        try:
            command = commands.RaiseInvitation.model_validate_json(message.body)
        except ValidationError as error:
            return _invalid(error)
        with bound_context({"correlation_id": command.correlation_id, "command": commands.RAISE_INVITATION}):
            try:
                async with transaction(sessions) as session:
                    raised = await service.raise_invitation(session=session, command=command, settings=settings)
            except service.Refused as refused:
                logger.info("invitation refused", reason=refused.rejection.message)
                return commands.encode_rejection(refused.rejection)
            except Exception:
                logger.exception("raising an invitation failed")
                return _rejected(commands.RejectionReason.UNAVAILABLE, "The invitations service failed; try again")
            notify_relay()
            logger.info("invitation raised", invitation_id=str(raised.invitation_id), tenant=command.tenant)
            mailer.send_soon(raised.mail)
            return commands.encode_result(commands.InvitationRaised(invitation_id=raised.invitation_id))

    @broker.subscriber(commands.ACCEPT_INVITATION, queue=QUEUE_GROUP, title=f"invitations {commands.ACCEPT_INVITATION}")
    async def accept_invitation(message: NatsMessage) -> bytes:
        try:
            command = commands.AcceptInvitation.model_validate_json(message.body)
        except ValidationError as error:
            return _invalid(error)
        context = {
            "correlation_id": command.correlation_id,
            "command": commands.ACCEPT_INVITATION,
            "firm_id": str(command.firm_id),
        }
        with bound_context(context):
            try:
                async with transaction(sessions) as session:
                    result = await service.accept_invitation(session=session, command=command, settings=settings)
            except service.Refused as refused:
                logger.info("acceptance refused", reason=refused.rejection.message)
                if refused.attempt is not None:
                    await _record_rejection(refused.attempt, refused.rejection.message, command)
                return commands.encode_rejection(refused.rejection)
            except Exception:
                logger.exception("accepting an invitation failed")
                return _rejected(commands.RejectionReason.UNAVAILABLE, "The invitations service failed; try again")
            notify_relay()
            logger.info("invitation accepted", invitation_id=str(result.invitation_id))
            return commands.encode_result(result)

    async def _record_rejection(
        attempt: service.RefusedAttempt, reason: str, command: commands.AcceptInvitation
    ) -> None:
        try:
            async with transaction(sessions) as session:
                await service.record_rejection(session=session, attempt=attempt, command=command, reason=reason)
        except Exception:
            # The refusal stands either way; only its audit record is missing.
            logger.exception("recording a refused acceptance failed")
            return
        notify_relay()
