"""A development SMTP server that keeps every message as a JSON file (`hub smtp-sink`).

`hub up` runs it so invitation mail can be read without a real mail server: each message
becomes ``{received_at}-{id}.json`` in ``HUB_SMTP_SINK_DIR`` (default ``.hub/mail``) with
``id``, ``to`` (the envelope recipients), ``from``, ``subject``, ``text``, ``html`` and
``received_at``. :func:`read_mailbox` reads them back, newest first; it needs nothing but
the standard library and pydantic, so the gateway's dev mail page can call it without
aiosmtpd.

It listens on 127.0.0.1 only, accepts any sender and every recipient but those of
``HUB_SMTP_SINK_REFUSED_DOMAIN`` (answered 550, as a mail server answers a mailbox it does
not have), and never relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from hub_common.dev_mail import Mail, store
from hub_common.logging import configure_logging, get_logger
from hub_common.settings import HubSettings

logger = get_logger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class SmtpSinkSettings(HubSettings):
    service_name: str = "smtp-sink"
    smtp_sink_host: str = "127.0.0.1"
    smtp_sink_port: int = 2525
    smtp_sink_dir: Path = Path(".hub/mail")
    # Recipients at this domain are refused for good (550), as by a real server.
    smtp_sink_refused_domain: str | None = None


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def parse_message(raw: bytes, *, recipients: list[str], envelope_from: str | None) -> Mail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return Mail(
        id=uuid.uuid4(),
        to=recipients,
        sender=str(message.get("From") or envelope_from or ""),
        subject=str(message.get("Subject") or ""),
        text=_body(message, "plain"),
        html=_body(message, "html"),
        received_at=datetime.now(UTC),
    )


class _SinkHandler:
    """aiosmtpd handler: every accepted message goes to the folder."""

    def __init__(self, folder: Path, refused_domain: str | None) -> None:
        self._folder = folder
        self._refused_suffix = f"@{refused_domain.lower()}" if refused_domain else None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self._refused_suffix is not None and address.lower().endswith(self._refused_suffix):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        mail = parse_message(raw, recipients=list(envelope.rcpt_tos), envelope_from=envelope.mail_from)
        path = await asyncio.to_thread(store, mail, self._folder)
        logger.info("mail received", to=mail.to, subject=mail.subject, file=path.name)
        return "250 Message accepted for delivery"


async def serve(settings: SmtpSinkSettings, *, ready: asyncio.Event | None = None) -> None:
    """Accept mail until SIGINT or SIGTERM."""
    from aiosmtpd.smtp import SMTP

    handler = _SinkHandler(settings.smtp_sink_dir, settings.smtp_sink_refused_domain)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="hub-smtp-sink", data_size_limit=MAX_MESSAGE_BYTES, loop=loop),
        host=settings.smtp_sink_host,
        port=settings.smtp_sink_port,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    logger.info(
        "smtp sink listening",
        host=settings.smtp_sink_host,
        port=settings.smtp_sink_port,
        folder=str(settings.smtp_sink_dir.resolve()),
    )
    if ready is not None:
        ready.set()
    async with server:
        await stop.wait()
    logger.info("smtp sink stopped")


def run(settings: SmtpSinkSettings | None = None) -> None:
    settings = settings or SmtpSinkSettings()
    configure_logging(settings)
    # aiosmtpd logs every connection at INFO; the sink logs each message itself.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.getLogger().level))
    asyncio.run(serve(settings))
