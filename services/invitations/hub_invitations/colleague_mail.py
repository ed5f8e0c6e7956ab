"""The email a colleague gets when an owner or admin invites them into the firm.

Sent at least once: a redelivered ColleagueInvited may send it again, which is harmless;
a mail server that stays down leaves the event in the dead-letter stream for an operator.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape

from hub_common.consumers import Delivery, EventHandler, Retry
from hub_common.events import ColleagueInvited, Envelope, EventData
from hub_invitations.mail import MailNotSent, send
from hub_invitations.settings import InvitationsSettings


def compose(invited: ColleagueInvited, settings: InvitationsSettings) -> EmailMessage:
    sign_in = f"{settings.public_url.rstrip('/')}/sign-in"
    firm = " ".join(invited.firm_name.split())
    inviter = " ".join(invited.inviter_name.split())
    message = EmailMessage()
    message["Subject"] = f"{inviter} invited you to {firm} on Accountant Hub"
    message["From"] = settings.mail_from
    message["To"] = invited.email
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accountant-hub.local"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(
        f"{inviter} invited you to join {firm} on Accountant Hub as {invited.role.value}.\n\n"
        f"Sign in with {invited.email} to join: {sign_in}\n"
    )
    message.add_alternative(
        f"<html><body><p>{escape(inviter)} invited you to join <strong>{escape(firm)}</strong> on Accountant Hub"
        f' as {escape(invited.role.value)}.</p><p><a href="{escape(sign_in)}">Sign in with'
        f" {escape(invited.email)}</a> to join.</p></body></html>",
        subtype="html",
    )
    return message


def colleague_mail_handler(settings: InvitationsSettings) -> EventHandler:
    async def handle(envelope: Envelope[EventData], delivery: Delivery) -> None:
        if not isinstance(envelope.data, ColleagueInvited):
            return
        try:
            await asyncio.to_thread(send, compose(envelope.data, settings), settings)
        except MailNotSent as error:
            raise Retry(f"mail not sent: {error}", delay_seconds=settings.mail_retry_seconds) from error

    return handle
