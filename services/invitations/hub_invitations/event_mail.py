"""Mail an event asks for (an alert, a digest, a colleague's invitation), sent once per event.

The event's id is claimed in ``invitations_alert_mails`` before the mail leaves and marked
sent after, so a redelivered event, or the same event stored twice, sends nothing more.
The composed mail is kept with the claim until it is sent: when SMTP fails, the event is
acknowledged and the mail loop (hub_invitations.mailer) retries the kept mail for as long
as the outage lasts, the least tried first. A mail the server refuses for good (an address
it does not take) is not kept: its event goes to the dead letters, where the firm's
``GET /api/v1/dead-letters`` and ``hub dead-letters`` show why. (A crash in the instant
between the SMTP server taking the mail and the mark could send it twice; each mail's
Message-ID is derived from its event, so a mailbox shows it once.)
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_string
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.consumers import GiveUp
from hub_common.db import transaction
from hub_common.logging import get_logger
from hub_invitations.mail import MailNotSent, send
from hub_invitations.models import EventMail, MailDrop
from hub_invitations.service import mail_claim
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)


def event_message_id(kind: str, event_id: str, settings: InvitationsSettings) -> str:
    """The Message-ID of an event's mail, from the event: a mail sent twice (a crash between
    sending and recording) is one mail in the mailbox."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accountant-hub.local"
    return f"<{kind}-{event_id}@{domain}>"


@dataclass(frozen=True)
class Addressee:
    """Whose an event's mail is: its firm, its address, and what kind of mail."""

    firm_id: uuid.UUID
    email: str
    kind: str  # INVITATION_MAIL or ALERT_MAIL
    # When the event asking for it happened: only mail of events before a removal or a
    # withdrawal is dropped by it (the address may have been invited again since).
    event_at: datetime


INVITATION_MAIL = "invitation"
ALERT_MAIL = "alert"
# Why a kept mail was not sent after all, in its row.
DROPPED_RECIPIENT_REMOVED = "not sent: its recipient was removed from the firm"
DROPPED_INVITATION_WITHDRAWN = "not sent: the firm withdrew the invitation"


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    event_id: uuid.UUID,
    message: EmailMessage,
    settings: InvitationsSettings,
    addressee: Addressee,
) -> bool:
    """Whether this delivery is to send the mail now: not sent yet, and nobody else sending
    it. The composed mail is kept with the claim, so the mail loop can send it should this
    attempt fail (or its sender die)."""
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        row = await session.get(EventMail, event_id, with_for_update=True)
        if row is not None and row.sent_at is not None:
            return False
        if row is not None and row.claimed_until is not None and row.claimed_until > now:
            return False  # another sender holds it; if it fails, the mail loop sends it
        if row is None and (reason := await _dropped(session, addressee)) is not None:
            # Handled only after its recipient's removal or its invitation's withdrawal:
            # settled as the drop settles mail kept then, so a redelivery sends nothing either.
            session.add(
                EventMail(
                    event_id=event_id,
                    firm_id=addressee.firm_id,
                    recipient=addressee.email.lower(),
                    kind=addressee.kind,
                    event_at=addressee.event_at,
                    sent_at=now,
                    last_error=reason,
                )
            )
            logger.info("mail not sent", event_id=str(event_id), kind=addressee.kind, reason=reason)
            return False
        row = row or EventMail(
            event_id=event_id,
            firm_id=addressee.firm_id,
            recipient=addressee.email.lower(),
            kind=addressee.kind,
            event_at=addressee.event_at,
        )
        row.claimed_until = now + mail_claim(settings)
        if row.message is None:
            row.message = message.as_string()
        session.add(row)
    return True


async def _dropped(session: AsyncSession, addressee: Addressee) -> str | None:
    """Why the addressee's mail must not go, when a removal or withdrawal after its event
    says so."""
    drop = await session.get(
        MailDrop, {"firm_id": addressee.firm_id, "recipient": addressee.email.lower(), "kind": addressee.kind}
    )
    if drop is None or addressee.event_at > drop.dropped_before:
        return None
    return drop.reason


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    event_id: uuid.UUID,
    *,
    sent: bool,
    error: str | None,
    give_up: bool = False,
) -> None:
    async with transaction(sessions) as session:
        row = await session.get(EventMail, event_id)
        if row is None:
            return
        row.claimed_until = None
        row.attempts += 1
        if row.sent_at is not None and not sent:
            # Settled while this attempt ran (dropped: its recipient left the firm, its
            # invitation was withdrawn): the reason it was not sent stays the row's, not the
            # SMTP error of an attempt that was no longer wanted.
            session.add(row)
            return
        row.last_error = error[:500] if error else None
        if sent:
            row.sent_at = datetime.now(UTC)
        if sent or give_up:
            row.message = None  # nothing left to retry; the event holds what it said
        session.add(row)


async def _deliver(
    sessions: async_sessionmaker[AsyncSession],
    event_id: uuid.UUID,
    message: EmailMessage,
    settings: InvitationsSettings,
) -> bool:
    """Send a claimed mail and record the outcome; False (the claim released, the mail kept
    for the mail loop) when SMTP did not take it."""
    try:
        await asyncio.to_thread(send, message, settings)
    except MailNotSent as error:
        if error.permanent:
            logger.error("mail refused for good; not retried", event_id=str(event_id), error=str(error))
            await _record(sessions, event_id, sent=False, error=str(error), give_up=True)
            raise
        logger.warning("mail not sent; it will be retried", event_id=str(event_id), error=str(error))
        await _record(sessions, event_id, sent=False, error=str(error))
        return False
    await _record(sessions, event_id, sent=True, error=None)
    logger.info("mail sent", event_id=str(event_id))
    return True


async def send_once(
    event_id: uuid.UUID,
    message: EmailMessage,
    sessions: async_sessionmaker[AsyncSession],
    settings: InvitationsSettings,
    addressee: Addressee,
) -> None:
    """Send the mail of the event ``event_id``, unless it was sent or is being sent; the
    event is given up (dead-lettered) when the server refuses the mail for good."""
    if not await _claim(sessions, event_id, message, settings, addressee):
        return
    try:
        await _deliver(sessions, event_id, message, settings)
    except MailNotSent as refused:
        raise GiveUp(f"mail refused: {refused}") from refused


async def drop_unsent_mail(
    sessions: async_sessionmaker[AsyncSession],
    *,
    firm_id: uuid.UUID,
    email: str,
    kind: str,
    reason: str,
    before: datetime,
) -> int:
    """Mail kept through an SMTP outage that must no longer go (its recipient left the firm,
    or its invitation was withdrawn, at ``before``): settled without sending, its text (the
    firm's figures, or a way into it) forgotten; how many. Mail of events after it (the
    address invited again, or back in the firm) still goes. One being sent at this instant
    still goes; should that attempt fail, it is not tried again (the row is settled). The
    drop is kept, so mail of such an event handled only later is not sent either."""
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        recipient = email.lower()
        key = {"firm_id": firm_id, "recipient": recipient, "kind": kind}
        drop = await session.get(MailDrop, key, with_for_update=True)
        if drop is None:
            session.add(MailDrop(firm_id=firm_id, recipient=recipient, kind=kind, dropped_before=before, reason=reason))
        elif before > drop.dropped_before:
            drop.dropped_before, drop.reason = before, reason
            session.add(drop)
        dropped = await session.execute(
            update(EventMail)
            .where(
                col(EventMail.sent_at).is_(None),
                col(EventMail.message).is_not(None),
                col(EventMail.event_at) <= before,
                col(EventMail.firm_id) == firm_id,
                col(EventMail.recipient) == recipient,
                col(EventMail.kind) == kind,
            )
            .values(sent_at=now, message=None, last_error=reason)
            .execution_options(synchronize_session=False)
        )
    count = int(getattr(dropped, "rowcount", 0) or 0)
    if count:
        logger.info("kept mail dropped", firm_id=str(firm_id), kind=kind, mails=count, reason=reason)
    return count


async def retry_unsent_event_mails(sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings) -> int:
    """Send every kept mail not sent yet that nobody holds; how many were sent. Stops at the
    first failure: the server is still failing, the next round tries again."""
    now = datetime.now(UTC)
    free = col(EventMail.claimed_until).is_(None) | (col(EventMail.claimed_until) <= now)
    unsent = col(EventMail.sent_at).is_(None) & col(EventMail.message).is_not(None) & free
    async with sessions() as session:
        # The least tried first: a mail the server keeps failing never holds up the others.
        least_tried = select(EventMail.event_id).where(unsent).order_by(col(EventMail.attempts)).limit(100)
        due = list((await session.execute(least_tried)).scalars())
    sent = 0
    for event_id in due:
        async with transaction(sessions) as session:
            # A conditional claim: several invitations processes never send the same mail.
            claimed = await session.execute(
                update(EventMail)
                .where(col(EventMail.event_id) == event_id, unsent)
                .values(claimed_until=now + mail_claim(settings))
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue
            text = (
                await session.execute(select(EventMail.message).where(col(EventMail.event_id) == event_id))
            ).scalar()
        if text is None:
            continue
        try:
            if not await _deliver(sessions, event_id, message_from_string(text, policy=default), settings):
                break
        except MailNotSent:
            continue  # refused for good and not kept (logged); the server takes others
        sent += 1
    return sent
