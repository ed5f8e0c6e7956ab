"""Delivering invitation mail: at once after the invitation commits, else retried (and the
mail of an event SMTP did not take, kept by hub_invitations.event_mail, in the same loop).

The handler that raised an invitation holds its mail (``mail_claimed_until``) and sends
it right after the commit. If SMTP fails, the invitation stays and its claim is released;
a loop in every invitations process looks for unsent, pending, unexpired invitations every
``mail_retry_seconds`` and sends them again with a fresh link (only the hash of the first
token was kept). A claim is taken with a conditional UPDATE, so several processes never
send the same invitation at once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.db import transaction
from hub_common.logging import get_logger
from hub_common.tasks import cancel_and_wait
from hub_invitations import service
from hub_invitations.event_mail import retry_unsent_event_mails
from hub_invitations.mail import InvitationMail, MailNotSent, compose, send
from hub_invitations.models import Invitation
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)


class InvitationMailer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._loop_task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[bool]] = set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="invitation-mail-retry")

    async def stop(self) -> None:
        tasks: list[asyncio.Task[None] | asyncio.Task[bool]] = [*self._sending]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        await asyncio.gather(*(cancel_and_wait(task) for task in tasks))

    def send_soon(self, mail: InvitationMail) -> None:
        """Send a just-committed invitation's mail without holding up the command's reply."""
        task = asyncio.create_task(self.deliver(mail), name=f"invitation-mail-{mail.invitation_id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def deliver(self, mail: InvitationMail) -> bool:
        """Send one mail and record the outcome; False (and the claim released) on failure."""
        invitation_id = uuid.UUID(mail.invitation_id)
        try:
            await asyncio.to_thread(send, compose(mail, self._settings), self._settings)
        except MailNotSent as error:
            logger.warning(
                "invitation mail not sent; it will be retried",
                invitation_id=mail.invitation_id,
                smtp=f"{self._settings.smtp_host}:{self._settings.smtp_port}",
                error=str(error),
            )
            await self._record(invitation_id, sent=False, error=str(error))
            return False
        await self._record(invitation_id, sent=True, error=None)
        logger.info("invitation mail sent", invitation_id=mail.invitation_id)
        return True

    async def _record(self, invitation_id: uuid.UUID, *, sent: bool, error: str | None) -> None:
        now = datetime.now(UTC)
        async with transaction(self._sessions) as session:
            await session.execute(
                update(Invitation)
                .where(col(Invitation.id) == invitation_id)
                .values(
                    mail_sent_at=now if sent else None,
                    mail_claimed_until=None,
                    mail_attempts=col(Invitation.mail_attempts) + 1,
                    mail_error=error[:500] if error else None,
                )
            )

    async def retry_once(self) -> int:
        """Send every unsent invitation nobody holds; returns how many were sent."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            unsent = (
                (
                    await session.execute(
                        select(Invitation.id)
                        .where(service.mail_due(now))
                        # Fewest attempts first: a mail the server keeps refusing (an
                        # address it does not have) falls behind the others instead of
                        # stopping every round at itself.
                        .order_by(col(Invitation.mail_attempts), col(Invitation.created_at))
                        .limit(100)
                    )
                )
                .scalars()
                .all()
            )
        sent = 0
        for invitation_id in unsent:
            async with transaction(self._sessions) as session:
                mail = await service.claim_unsent_mail(
                    session=session, invitation_id=invitation_id, settings=self._settings
                )
            if mail is not None and await self.deliver(mail):
                sent += 1
            elif mail is not None:
                # The server may be down for everyone: wait for the next round.
                break
        return sent

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.mail_retry_seconds)
            try:
                await self.retry_once()
            except Exception:
                logger.exception("invitation mail retry failed; trying again later")
            try:
                await retry_unsent_event_mails(self._sessions, self._settings)
            except Exception:
                logger.exception("event mail retry failed; trying again later")
