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
from hub_common.events import ColleagueInvited, Envelope, EventData, Role
from hub_common.i18n import N_, language_of, translator
from hub_invitations.mail import MailNotSent, send
from hub_invitations.settings import InvitationsSettings

ROLE_NAMES: dict[Role, str] = {Role.OWNER: N_("owner"), Role.ADMIN: N_("admin"), Role.STAFF: N_("staff")}


def compose(invited: ColleagueInvited, settings: InvitationsSettings) -> EmailMessage:
    """The mail in the inviting accountant's language (carried by the event)."""
    t = translator(language_of(invited.language))
    sign_in = f"{settings.public_url.rstrip('/')}/sign-in"
    firm = " ".join(invited.firm_name.split())
    inviter = " ".join(invited.inviter_name.split())
    role = t.gettext(ROLE_NAMES[invited.role])
    message = EmailMessage()
    message["Subject"] = t.gettext("%(inviter)s invited you to %(firm)s on Accountant Hub", inviter=inviter, firm=firm)
    message["From"] = settings.mail_from
    message["To"] = invited.email
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accountant-hub.local"
    message["Message-ID"] = make_msgid(domain=domain)
    invitation = t.gettext(
        "%(inviter)s invited you to join %(firm)s on Accountant Hub as %(role)s.", inviter=inviter, firm=firm, role=role
    )
    to_join = t.gettext("Sign in with %(email)s to join:", email=invited.email)
    message.set_content(f"{invitation}\n\n{to_join} {sign_in}\n")
    message.add_alternative(
        f'<html lang="{escape(t.language)}"><body><p>{escape(invitation)}</p>'
        f'<p>{escape(to_join)} <a href="{escape(sign_in)}">{escape(sign_in)}</a></p></body></html>',
        subtype="html",
    )
    # After the content: setting it clears every Content-* header.
    message["Content-Language"] = t.language
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
