"""The mail of an alert: one when an episode starts (AlertRaised, delivery "immediate"), or
one a day listing the episodes started since the last (AlertDigestDue). Sent once per
event, and retried while SMTP is down (hub_invitations.event_mail). Written in the rule
owner's language, which the event carries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from babel.dates import format_datetime as format_localized
from babel.numbers import format_currency, format_decimal
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.events import AlertDigestDue, AlertRaised, AlertRecipient, Envelope, EventData
from hub_common.i18n import N_, Translator, language_of, translator
from hub_common.logging import get_logger
from hub_invitations.event_mail import ALERT_MAIL, Addressee, event_message_id, send_once
from hub_invitations.headers import header_text
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)

FIGURE_NAMES: dict[str, str] = {
    "cash": N_("cash"),
    "overdue_sales": N_("overdue sales invoices"),
    "overdue_purchases": N_("overdue purchase invoices"),
    "purchases_due_next_week": N_("purchase invoices due next week"),
    "taxes_due": N_("taxes due"),
    "sales_this_month": N_("sales this month"),
    "forecast_low_point": N_("the forecast's low point"),
    "runway_weeks": N_("the cash runway"),
    "failing_hours": N_("the time its refreshes have been failing"),
}
COMPARISONS: dict[str, str] = {"below": N_("below"), "above": N_("above")}


def amount(t: Translator, figure: str, value: Decimal, currency_code: str | None) -> str:
    """A value as the reader's language writes it: an amount, weeks or hours."""
    if figure == "runway_weeks":
        return t.ngettext(
            "%(count)s week", "%(count)s weeks", int(value), count=format_decimal(value, locale=t.language)
        )
    if figure == "failing_hours":
        return t.gettext("%(hours)s hours", hours=format_decimal(value, locale=t.language))
    if currency_code:
        try:
            return format_currency(value, currency_code, locale=t.language)
        except ValueError:  # a BC currency code Babel does not know
            pass
    return format_decimal(value, locale=t.language, decimal_quantization=False)


def _moment(t: Translator, moment: datetime) -> str:
    return format_localized(moment, "d MMMM y, HH:mm", tzinfo=UTC, locale=t.language) + " UTC"


def _message(
    recipient: AlertRecipient,
    subject: str,
    text: str,
    html: str,
    *,
    event_id: str,
    t: Translator,
    settings: InvitationsSettings,
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = header_text(subject)
    message["From"] = settings.mail_from
    message["To"] = recipient.email
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = event_message_id("alert", event_id, settings)
    message["X-Hub-Event-Id"] = event_id
    message.set_content(text)
    message.add_alternative(
        f'<!doctype html><html lang="{escape(t.language)}"><head><meta charset="utf-8"><title>{escape(subject)}</title>'
        f'</head><body style="font-family:system-ui,sans-serif;line-height:1.5;max-width:40rem">{html}</body></html>',
        subtype="html",
    )
    message["Content-Language"] = t.language
    return message


def _alerts_url(settings: InvitationsSettings) -> str:
    return f"{settings.public_url.rstrip('/')}/alerts"


def compose_raised(raised: AlertRaised, event_id: str, settings: InvitationsSettings) -> EmailMessage:
    t = translator(language_of(raised.recipient.language))
    where = f"{raised.client_name} – {raised.company_name}" if raised.company_name else raised.client_name
    subject = t.gettext("Alert: %(rule)s for %(where)s", rule=raised.rule_name, where=where)
    hello = t.gettext("Hello %(name)s,", name=raised.recipient.display_name)
    holds = t.gettext(
        "Your alert %(rule)s now holds for %(where)s: %(figure)s is %(value)s, %(comparison)s %(threshold)s.",
        rule=raised.rule_name,
        where=where,
        figure=t.gettext(FIGURE_NAMES[raised.figure]),
        value=amount(t, raised.figure, raised.value, raised.currency_code),
        comparison=t.gettext(COMPARISONS[raised.comparison]),
        threshold=amount(t, raised.figure, raised.threshold, raised.currency_code),
    )
    since = t.gettext("Since %(moment)s.", moment=_moment(t, raised.started_at))
    once = t.gettext("You get this mail once; the next comes after the alert stops holding and holds again.")
    see = t.gettext("Your alerts:")
    url = _alerts_url(settings)
    text = f"{hello}\n\n{holds}\n{since}\n\n{once}\n\n{see} {url}\n"
    html = (
        f"<p>{escape(hello)}</p><p>{escape(holds)}<br>{escape(since)}</p><p>{escape(once)}</p>"
        f'<p>{escape(see)} <a href="{escape(url)}">{escape(url)}</a></p>'
    )
    return _message(raised.recipient, subject, text, html, event_id=event_id, t=t, settings=settings)


def compose_digest(digest: AlertDigestDue, event_id: str, settings: InvitationsSettings) -> EmailMessage:
    t = translator(language_of(digest.recipient.language))
    subject = t.gettext("Daily alert digest: %(rule)s", rule=digest.rule_name)
    hello = t.gettext("Hello %(name)s,", name=digest.recipient.display_name)
    count = len(digest.episodes)
    intro = t.ngettext(
        "Your alert %(rule)s (%(condition)s) started to hold %(count)s time since %(since)s:",
        "Your alert %(rule)s (%(condition)s) started to hold %(count)s times since %(since)s:",
        count,
        rule=digest.rule_name,
        condition=f"{t.gettext(FIGURE_NAMES[digest.figure])} {t.gettext(COMPARISONS[digest.comparison])} "
        + amount(t, digest.figure, digest.threshold, None),
        count=str(count),
        since=_moment(t, digest.since),
    )
    lines: list[str] = []
    for episode in digest.episodes:
        where = f"{episode.client_name} – {episode.company_name}" if episode.company_name else episode.client_name
        value = amount(t, digest.figure, episode.value, episode.currency_code)
        line = t.gettext(
            "%(where)s: %(value)s, since %(moment)s", where=where, value=value, moment=_moment(t, episode.started_at)
        )
        if episode.ended_at is not None:
            line += " " + t.gettext("(over at %(moment)s)", moment=_moment(t, episode.ended_at))
        lines.append(line)
    see = t.gettext("Your alerts:")
    url = _alerts_url(settings)
    text = f"{hello}\n\n{intro}\n" + "".join(f"  - {line}\n" for line in lines) + f"\n{see} {url}\n"
    html = (
        f"<p>{escape(hello)}</p><p>{escape(intro)}</p><ul>"
        + "".join(f"<li>{escape(line)}</li>" for line in lines)
        + f'</ul><p>{escape(see)} <a href="{escape(url)}">{escape(url)}</a></p>'
    )
    return _message(digest.recipient, subject, text, html, event_id=event_id, t=t, settings=settings)


def compose_alert(envelope: Envelope[EventData], settings: InvitationsSettings) -> EmailMessage | None:
    """The mail an alert event asks for, or None (a digest rule's start, a webhook-only rule)."""
    data = envelope.data
    if isinstance(data, AlertRaised) and data.email and data.delivery == "immediate":
        return compose_raised(data, str(envelope.id), settings)
    if isinstance(data, AlertDigestDue):
        return compose_digest(data, str(envelope.id), settings)
    return None


async def send_alert_mail(
    envelope: Envelope[EventData], sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings
) -> None:
    """Send the mail an alert event asks for, once (hub_invitations.event_mail)."""
    message = compose_alert(envelope, settings)
    data = envelope.data
    if message is not None and isinstance(data, AlertRaised | AlertDigestDue):
        addressee = Addressee(
            firm_id=envelope.firm_id, email=data.recipient.email, kind=ALERT_MAIL, event_at=envelope.occurred_at
        )
        await send_once(envelope.id, message, sessions, settings, addressee)
