"""The mail of an alert: one when an episode starts (AlertRaised, delivery "immediate"), or
one a day listing the episodes started since the last (AlertDigestDue).

Exactly once per event: the event's id is claimed in ``invitations_alert_mails`` before the
mail leaves and marked sent after, so a redelivered event sends nothing more. The composed
mail is kept with the claim until it is sent: when SMTP fails, the event is acknowledged
and the mail loop (hub_invitations.mailer) retries the kept mail, as it does invitations. (A crash in
the instant between the SMTP server taking the mail and the mark could send it twice; the
Message-ID is derived from the event, so a mailbox shows it once.) Written in the rule
owner's language, which the event carries.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_string
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parseaddr
from html import escape

from babel.dates import format_datetime as format_localized
from babel.numbers import format_currency, format_decimal
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.db import transaction
from hub_common.events import AlertDigestDue, AlertRaised, AlertRecipient, Envelope, EventData
from hub_common.i18n import N_, Translator, language_of, translator
from hub_common.logging import get_logger
from hub_invitations.mail import MailNotSent, send
from hub_invitations.models import AlertMail
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    message["Subject"] = _one_line(subject)
    message["From"] = settings.mail_from
    message["To"] = recipient.email
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accountant-hub.local"
    # From the event: a mail sent twice (a crash between sending and recording) is one mail.
    message["Message-ID"] = f"<alert-{event_id}@{domain}>"
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


async def _claim(
    sessions: async_sessionmaker[AsyncSession], envelope: Envelope[EventData], message: EmailMessage, hold: timedelta
) -> bool:
    """Whether this delivery is to send the mail now: not sent yet, and nobody else sending
    it. The composed mail is kept with the claim, so the mail loop can send it should this
    attempt fail (or its sender die)."""
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        row = await session.get(AlertMail, envelope.id, with_for_update=True)
        if row is not None and row.sent_at is not None:
            return False
        if row is not None and row.claimed_until is not None and row.claimed_until > now:
            return False  # another sender holds it; if it fails, the mail loop sends it
        row = row or AlertMail(event_id=envelope.id)
        row.claimed_until = now + hold
        if row.message is None:
            row.message = message.as_string()
        session.add(row)
    return True


async def _record(
    sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID, *, sent: bool, error: str | None
) -> None:
    async with transaction(sessions) as session:
        row = await session.get(AlertMail, event_id)
        if row is None:
            return
        row.claimed_until = None
        row.attempts += 1
        row.last_error = error[:500] if error else None
        if sent:
            row.sent_at = datetime.now(UTC)
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
        logger.warning("alert mail not sent; it will be retried", event_id=str(event_id), error=str(error))
        await _record(sessions, event_id, sent=False, error=str(error))
        return False
    await _record(sessions, event_id, sent=True, error=None)
    logger.info("alert mail sent", event_id=str(event_id))
    return True


def _hold(settings: InvitationsSettings) -> timedelta:
    return timedelta(seconds=settings.smtp_timeout_seconds * 3)


async def send_alert_mail(
    envelope: Envelope[EventData], sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings
) -> None:
    """Send the mail an alert event asks for, once. A mail SMTP does not take stays unsent in
    ``invitations_alert_mails`` and the event is acknowledged: the mail loop retries it for
    as long as the outage lasts (a redelivery of the event would end in the dead letters)."""
    message = compose_alert(envelope, settings)
    if message is None:
        return
    if not await _claim(sessions, envelope, message, _hold(settings)):
        return  # sent already (a redelivery), or being sent
    await _deliver(sessions, envelope.id, message, settings)


async def retry_unsent_alert_mails(sessions: async_sessionmaker[AsyncSession], settings: InvitationsSettings) -> int:
    """Send every kept alert mail not sent yet that nobody holds; how many were sent. Stops
    at the first failure: the server is still failing, the next round tries again."""
    now = datetime.now(UTC)
    free = col(AlertMail.claimed_until).is_(None) | (col(AlertMail.claimed_until) <= now)
    unsent = col(AlertMail.sent_at).is_(None) & col(AlertMail.message).is_not(None) & free
    async with sessions() as session:
        due = list((await session.execute(select(AlertMail.event_id).where(unsent).limit(100))).scalars())
    sent = 0
    for event_id in due:
        async with transaction(sessions) as session:
            # A conditional claim: several invitations processes never send the same mail.
            claimed = await session.execute(
                update(AlertMail)
                .where(col(AlertMail.event_id) == event_id, unsent)
                .values(claimed_until=now + _hold(settings))
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue
            text = (
                await session.execute(select(AlertMail.message).where(col(AlertMail.event_id) == event_id))
            ).scalar()
        if text is None:
            continue
        if not await _deliver(sessions, event_id, message_from_string(text, policy=default), settings):
            break
        sent += 1
    return sent
