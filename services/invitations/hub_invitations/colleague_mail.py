"""The email a colleague gets when an owner or admin invites them into the firm.

Sent once per ColleagueInvited, however often it is delivered, and retried for as long as
the mail server is down (hub_invitations.event_mail).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.events import ColleagueInvited, Envelope, EventData, Role
from hub_common.i18n import N_, language_of, translator
from hub_invitations.event_mail import INVITATION_MAIL, Addressee, event_message_id, send_once
from hub_invitations.headers import header_text
from hub_invitations.settings import InvitationsSettings

ROLE_NAMES: dict[Role, str] = {Role.OWNER: N_("owner"), Role.ADMIN: N_("admin"), Role.STAFF: N_("staff")}


def compose(invited: ColleagueInvited, settings: InvitationsSettings, *, event_id: str) -> EmailMessage:
    """The mail in the inviting accountant's language (carried by the event)."""
    t = translator(language_of(invited.language))
    sign_in = f"{settings.public_url.rstrip('/')}/sign-in"
    firm = " ".join(invited.firm_name.split())
    inviter = " ".join(invited.inviter_name.split())
    role = t.gettext(ROLE_NAMES[invited.role])
    message = EmailMessage()
    message["Subject"] = header_text(
        t.gettext("%(inviter)s invited you to %(firm)s on Accountant Hub", inviter=inviter, firm=firm)
    )
    message["From"] = settings.mail_from
    message["To"] = invited.email
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = event_message_id("invitation", event_id, settings)
    message["X-Hub-Event-Id"] = event_id
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


async def send_colleague_mail(
    envelope: Envelope[EventData], sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings
) -> None:
    if isinstance(envelope.data, ColleagueInvited):
        message = compose(envelope.data, settings, event_id=str(envelope.id))
        addressee = Addressee(
            firm_id=envelope.firm_id, email=envelope.data.email, kind=INVITATION_MAIL, event_at=envelope.occurred_at
        )
        await send_once(envelope.id, message, sessions, settings, addressee)
