"""The invitation email: composed from an invitation and its link, sent over SMTP.

The subject follows BC's wizard ("You have been invited to {product}"), naming the client.
The body carries two links to the gateway: accept access, or accept and add the client
to the dashboard. Sending is blocking ``smtplib``; callers run it off the event loop.

The mail is written in the invitation's language (hub_common.i18n): the client
administrator's, taken from their request when the invitation was raised and stored with it,
since the accountant invited may have no account whose preference could be asked.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape
from urllib.parse import urlencode

from babel.dates import format_datetime as format_localized

from hub_common.i18n import Translator, translator
from hub_invitations.headers import header_text
from hub_invitations.settings import InvitationsSettings

PRODUCT = "Accountant Hub"
ACCEPT_PATH = "/invitations/accept"


@dataclass(frozen=True)
class InvitationMail:
    """What the email says, independent of how it is sent."""

    invitation_id: str
    email: str
    accountant_name: str
    client_name: str
    environment: str
    companies: tuple[str, ...]
    welcome_text: str | None
    expires_at: datetime
    accept_url: str
    add_url: str
    language: str = "en"
    # Who raised it and in which Entra tenant, both from their verified token: what the
    # client's name, typed by that person, cannot prove.
    raised_by: str = ""
    tenant: str = ""

    @property
    def t(self) -> Translator:
        return translator(self.language)

    @property
    def subject(self) -> str:
        return self.t.gettext(
            "You have been invited to %(product)s by %(client)s", product=PRODUCT, client=header_text(self.client_name)
        )


def accept_urls(public_url: str, link: str) -> tuple[str, str]:
    """The two links of the email: accept access, and accept and add to the dashboard."""
    base = f"{public_url.rstrip('/')}{ACCEPT_PATH}"
    return f"{base}?{urlencode({'link': link})}", f"{base}?{urlencode({'link': link, 'add': '1'})}"


def _expiry(moment: datetime, language: str) -> str:
    """The day and time in the mail's language, in UTC (the reader's zone is unknown)."""
    return format_localized(moment, "d MMMM y, HH:mm", tzinfo=UTC, locale=language) + " UTC"


# How a client's own welcome text may open (BC's invitation lets them write one): then it is
# the greeting, and the mail does not greet a second time.
_GREETING = re.compile(
    r"^\s*(hello|hi|hey|dear|good (morning|afternoon|evening)|hallo|beste|geachte|goedemorgen|goedemiddag"
    r"|liebe|lieber|sehr geehrte|guten (tag|morgen)|bonjour|bonsoir|cher|chère|madame|monsieur)\b",
    re.IGNORECASE,
)


def _greets(welcome_text: str | None) -> bool:
    return bool(welcome_text and _GREETING.match(welcome_text))


def plain_text(mail: InvitationMail) -> str:
    t = mail.t
    greeting = [] if _greets(mail.welcome_text) else [t.gettext("Hello %(name)s,", name=mail.accountant_name), ""]
    lines = greeting
    if mail.welcome_text and mail.welcome_text.strip():
        lines += [mail.welcome_text.strip(), ""]
    lines += [
        t.gettext(
            "%(client)s invites you to follow their Business Central companies in %(product)s:",
            client=mail.client_name,
            product=PRODUCT,
        ),
        *(f"  - {company}" for company in mail.companies),
        t.gettext("(environment %(environment)s).", environment=mail.environment),
        *[line for line in (_provenance(mail),) if line],
        "",
        t.gettext("Accept access:"),
        mail.accept_url,
        "",
        t.gettext("Accept and add %(client)s to your dashboard:", client=mail.client_name),
        mail.add_url,
        "",
        _sign_in_with(mail),
        "",
        t.gettext("If you did not expect this invitation, ignore this email; nothing happens until you accept."),
    ]
    return "\n".join(lines) + "\n"


def _provenance(mail: InvitationMail) -> str | None:
    if not mail.raised_by or not mail.tenant:
        return None
    return mail.t.gettext(
        "Raised by %(administrator)s, an administrator of the Microsoft Entra tenant %(tenant)s,"
        " whose sign-in the hub checked.",
        administrator=mail.raised_by,
        tenant=mail.tenant,
    )


def _sign_in_with(mail: InvitationMail) -> str:
    return mail.t.gettext(
        "Sign in with %(email)s to accept. The link works once, only for that address, until %(expiry)s.",
        email=mail.email,
        expiry=_expiry(mail.expires_at, mail.language),
    )


def html_body(mail: InvitationMail) -> str:
    t = mail.t
    welcome = (
        "".join(f"<p>{escape(paragraph)}</p>" for paragraph in mail.welcome_text.strip().split("\n\n"))
        if mail.welcome_text and mail.welcome_text.strip()
        else ""
    )
    hello = t.gettext("Hello %(name)s,", name=mail.accountant_name)
    greeting = "" if _greets(mail.welcome_text) else f"<p>{escape(hello)}</p>"
    companies = "".join(f"<li>{escape(company)}</li>" for company in mail.companies)
    invites = t.gettext(
        "%(client)s invites you to follow their Business Central companies in %(product)s:",
        client=mail.client_name,
        product=PRODUCT,
    )
    environment = t.gettext("(environment %(environment)s).", environment=mail.environment)
    accept = t.gettext("Accept access")
    add = t.gettext("Accept and add %(client)s to your dashboard", client=mail.client_name)
    ignore = t.gettext("If you did not expect this invitation, ignore this email; nothing happens until you accept.")
    said_by = _provenance(mail)
    provenance = f"<p>{escape(said_by)}</p>" if said_by else ""
    return (
        f'<!doctype html><html lang="{escape(mail.language)}"><head><meta charset="utf-8">'
        f"<title>{escape(mail.subject)}</title></head>"
        '<body style="font-family:system-ui,sans-serif;line-height:1.5;max-width:40rem">'
        f"{greeting}{welcome}"
        f"<p>{escape(invites)}</p><ul>{companies}</ul><p>{escape(environment)}</p>"
        f"{provenance}"
        f'<p><a href="{escape(mail.accept_url)}">{escape(accept)}</a></p>'
        f'<p><a href="{escape(mail.add_url)}">{escape(add)}</a></p>'
        f"<p>{escape(_sign_in_with(mail))}</p>"
        f"<p>{escape(ignore)}</p>"
        "</body></html>"
    )


def compose(mail: InvitationMail, settings: InvitationsSettings) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = mail.subject
    message["From"] = header_text(settings.mail_from)
    local, _, domain = mail.email.rpartition("@")
    message["To"] = Address(display_name=header_text(mail.accountant_name), username=local, domain=domain)
    message["Date"] = format_datetime(datetime.now(UTC))
    sender_domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accountant-hub.local"
    message["Message-ID"] = make_msgid(idstring=mail.invitation_id, domain=sender_domain)
    message["X-Hub-Invitation-Id"] = mail.invitation_id
    message.set_content(plain_text(mail))
    message.add_alternative(html_body(mail), subtype="html")
    # After the content: setting it clears every Content-* header.
    message["Content-Language"] = mail.language
    return message


class MailNotSent(Exception):
    """The SMTP server could not be reached or refused the message. ``permanent`` when it
    refused this message for good (every recipient refused, or the message refused with a
    5xx reply): sending it again would only be refused again."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def _refused_for_good(error: BaseException) -> bool:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return True
    # A sender refused or a failed login is the hub's configuration, not this message's.
    return isinstance(error, smtplib.SMTPDataError) and 500 <= error.smtp_code < 600


def send(message: EmailMessage, settings: InvitationsSettings) -> None:
    """Hand the message to the configured SMTP server (blocking)."""
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise MailNotSent(f"{type(error).__name__}: {error}"[:500], permanent=_refused_for_good(error)) from error
