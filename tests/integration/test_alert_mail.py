"""Mail of events as the invitations service sends it (`hub invitations` and `hub smtp-sink`
processes, a real nats-server): one mail per AlertRaised even when the event is stored and
delivered twice, in the rule owner's language; none for a digest rule's or a webhook-only
rule's alert; the daily digest listing its alerts; an alert mail SMTP does not take is kept
and retried by the mail loop past the consumer's deliveries, and sent once when SMTP is back;
a colleague's invitation likewise, once however often it is stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy import create_engine, make_url, text

from hub_common.bus import publish_event
from hub_common.db import create_engine as create_async_engine
from hub_common.db import migrate, session_factory, sync_url
from hub_common.dev_mail import Mail, read_mailbox
from hub_common.events import (
    AccountantRemoved,
    Actor,
    AlertDigestDue,
    AlertRaised,
    AlertRecipient,
    ColleagueInvitationWithdrawn,
    ColleagueInvited,
    DigestEpisode,
    EventData,
    Role,
    new_envelope,
)
from hub_common.local_nats import free_port
from hub_common.streams import DEAD_LETTER_STREAM, EVENTS_STREAM, INVITATIONS_CONSUMER, declare_topology
from hub_invitations import event_mail
from hub_invitations.app import MIGRATIONS as INVITATIONS_MIGRATIONS
from hub_invitations.app import VERSION_TABLE as INVITATIONS_VERSION_TABLE
from hub_invitations.event_mail import ALERT_MAIL, Addressee
from hub_invitations.settings import InvitationsSettings
from tests.conftest import POSTGRESQL_ONLY
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.test_invitations import Sink, _start_invitations, _start_sink
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.postgres

FIRM = uuid.uuid4()
STARTED = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    running = _start_sink(tmp_path_factory.mktemp("alert-mail"), tmp_path_factory.mktemp("alert-sink-logs"))
    yield running
    running.process.stop()


@pytest.fixture
def invitations(nats_url: str, database_url: str, sink: Sink, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = _start_invitations(nats_url, database_url, sink.port, tmp_path / "logs")
    yield process
    process.stop()


def _raised(email: str, *, language: str = "nl", delivery: str = "immediate", mailed: bool = True) -> AlertRaised:
    return AlertRaised(
        episode_id=uuid.uuid4(),
        rule_id=uuid.uuid4(),
        rule_name="Weinig kas",
        client_id=uuid.uuid4(),
        client_name="Mühlbach Gruppe",
        company_id=uuid.uuid4(),
        company_name="Mühlbach Holzbau AG",
        figure="cash",
        comparison="below",
        threshold=Decimal("10000"),
        value=Decimal("8432.10"),
        currency_code="EUR",
        started_at=STARTED,
        recipient=AlertRecipient(accountant_id=uuid.uuid4(), email=email, display_name="Sanne", language=language),
        email=mailed,
        delivery=delivery,
    )


async def _mails(folder: Path, email: str, *, at_least: int, wait: float = 20) -> list[Mail]:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        mails = [mail for mail in read_mailbox(folder) if email in mail.to]
        if len(mails) >= at_least or asyncio.get_running_loop().time() > deadline:
            return mails
        await asyncio.sleep(0.1)


async def test_one_mail_per_alert_in_the_owners_language_even_when_delivered_twice(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client
) -> None:
    js = nats_connection.jetstream()
    await declare_topology(js)
    email = f"sanne.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
    envelope = new_envelope(_raised(email), firm_id=FIRM, actor=Actor.service("registry-alerts"))
    await publish_event(js, envelope)
    # The same event stored again past JetStream's duplicate window (a replay): no second mail.
    await js.publish(envelope.subject, envelope.to_bytes(), headers={"Nats-Msg-Id": f"replayed-{envelope.id}"})
    # A digest rule's alert and a webhook-only rule's alert are not mailed one by one.
    for quiet in (_raised(email, delivery="daily_digest"), _raised(email, mailed=False)):
        await publish_event(js, new_envelope(quiet, firm_id=FIRM, actor=Actor.service("registry-alerts")))
    [mail] = await _mails(sink.folder, email, at_least=1)
    await asyncio.sleep(3)  # time for a second mail, were there one
    assert len(await _mails(sink.folder, email, at_least=2, wait=0)) == 1
    assert mail.subject == "Waarschuwing: Weinig kas voor Mühlbach Gruppe – Mühlbach Holzbau AG"
    assert mail.text is not None
    text = mail.text.replace("\xa0", " ")  # Babel writes amounts with no-break spaces
    assert "liquide middelen is € 8.432,10, onder € 10.000,00" in text, text
    assert "http://hub.test:8000/alerts" in mail.text


async def test_a_daily_digest_lists_its_alerts(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client
) -> None:
    js = nats_connection.jetstream()
    await declare_topology(js)
    email = f"dieter.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
    episodes = [
        DigestEpisode(
            episode_id=uuid.uuid4(),
            client_name="Mühlbach Gruppe",
            company_name="Mühlbach Holzbau AG",
            value=Decimal("8432.10"),
            currency_code="EUR",
            started_at=STARTED,
            ended_at=STARTED + timedelta(hours=3),
        ),
        DigestEpisode(
            episode_id=uuid.uuid4(),
            client_name="Fabrikam",
            value=Decimal("12.5"),
            currency_code="USD",
            started_at=STARTED + timedelta(hours=4),
        ),
    ]
    digest = AlertDigestDue(
        digest_id=uuid.uuid4(),
        rule_id=uuid.uuid4(),
        rule_name="Kasse knapp",
        figure="cash",
        comparison="below",
        threshold=Decimal("10000"),
        recipient=AlertRecipient(accountant_id=uuid.uuid4(), email=email, display_name="Dieter", language="de"),
        since=STARTED - timedelta(hours=2),
        until=STARTED + timedelta(hours=22),
        episodes=episodes,
    )
    await publish_event(js, new_envelope(digest, firm_id=FIRM, actor=Actor.service("registry-alerts")))
    [mail] = await _mails(sink.folder, email, at_least=1)
    assert mail.subject == "Tägliche Zusammenfassung der Warnungen: Kasse knapp"
    assert mail.text is not None
    text = mail.text.replace("\xa0", " ")
    assert "Ihre Warnung Kasse knapp (Liquidität unter 10.000) trat seit" in text and "2-mal ein" in text, text
    assert "Mühlbach Gruppe – Mühlbach Holzbau AG: 8.432,10 €" in text, text
    assert "(vorbei um" in text
    assert "Fabrikam: 12,50 $" in text, text


def _event_mail_row(database_url: str, event_id: uuid.UUID) -> dict[str, object] | None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM invitations_alert_mails")).mappings().all()
    finally:
        engine.dispose()
    found = [dict(row) for row in rows if str(row["event_id"]).replace("-", "") == event_id.hex]
    return found[0] if found else None


def _invited(email: str) -> ColleagueInvited:
    return ColleagueInvited(
        email=email,
        role=Role.STAFF,
        invited_by=uuid.uuid4(),
        firm_name="Litware Accountants",
        inviter_name="Grace de Vries",
        language="en",
    )


def _alert_in_english(email: str) -> AlertRaised:
    return _raised(email, language="en")


# Each kind of mail an event asks for, and the subject its mail has.
MAILED_EVENTS: dict[str, tuple[Callable[[str], EventData], str]] = {
    "alert": (_alert_in_english, "Alert: Weinig kas for Mühlbach Gruppe – Mühlbach Holzbau AG"),
    "colleague": (_invited, "Grace de Vries invited you to Litware Accountants on Accountant Hub"),
}


@pytest.mark.parametrize("kind", MAILED_EVENTS)
async def test_a_mail_smtp_does_not_take_is_kept_and_sent_once_when_smtp_is_back(
    nats_url: str, database_url: str, nats_connection: Client, tmp_path: Path, kind: str
) -> None:
    event_for, subject = MAILED_EVENTS[kind]
    js = nats_connection.jetstream()
    await declare_topology(js)
    # No SMTP server on this port yet: an outage longer than the consumer's deliveries.
    port = free_port()
    # The mail loop every 0.2 s, so the kept mail is tried past max_deliver within seconds.
    process = _start_invitations(
        nats_url, database_url, port, tmp_path / "logs", settings={"HUB_MAIL_RETRY_SECONDS": "0.2"}
    )
    late_sink: Sink | None = None
    try:
        email = f"outage.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
        envelope = new_envelope(event_for(email), firm_id=FIRM, actor=Actor.service("registry"))
        await publish_event(js, envelope)
        # The mail loop keeps trying the kept mail, far past the consumer's max_deliver: the
        # event was acknowledged, and nothing is dead-lettered.
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            row = _event_mail_row(database_url, envelope.id)
            if row is not None and int(str(row["attempts"])) > INVITATIONS_CONSUMER.max_deliver:
                break
            assert asyncio.get_running_loop().time() < deadline, (row, process.log()[-3000:])
            await asyncio.sleep(0.5)
        assert row["sent_at"] is None and row["last_error"] and row["message"]

        late_sink = _start_sink(tmp_path / "late-mail", tmp_path / "sink-logs", port)
        [mail] = await _mails(late_sink.folder, email, at_least=1, wait=30)
        assert mail.subject == subject
        await asyncio.sleep(1)  # five rounds of the mail loop: time for a second mail, were there one
        assert len(await _mails(late_sink.folder, email, at_least=2, wait=0)) == 1
        sent = _event_mail_row(database_url, envelope.id)
        assert sent is not None and sent["sent_at"] is not None and sent["last_error"] is None
    finally:
        process.stop()
        if late_sink is not None:
            late_sink.process.stop()


def _removed(email: str) -> AccountantRemoved:
    return AccountantRemoved(accountant_id=uuid.uuid4(), email=email, removed_by=uuid.uuid4())


def _withdrawn(email: str) -> ColleagueInvitationWithdrawn:
    return ColleagueInvitationWithdrawn(email=email, role=Role.STAFF, withdrawn_by=uuid.uuid4())


# A kept mail, and the event after which it must not go.
NO_LONGER_MAILED: dict[str, tuple[Callable[[str], EventData], Callable[[str], EventData]]] = {
    "alert to a colleague removed since": (_alert_in_english, _removed),
    "invitation withdrawn since": (_invited, _withdrawn),
}


@pytest.mark.parametrize("case", NO_LONGER_MAILED)
async def test_a_kept_mail_that_must_no_longer_go_is_dropped_and_others_still_go(
    nats_url: str, database_url: str, nats_connection: Client, tmp_path: Path, case: str
) -> None:
    """During an SMTP outage an owner removes a colleague (or withdraws an invitation): the
    alert mail (or invitation) kept for them is not sent when SMTP is back. Another firm's
    mail to the same address, and the firm's mail to someone else, still go."""
    mailed, cancelling = NO_LONGER_MAILED[case]
    js = nats_connection.jetstream()
    await declare_topology(js)
    port = free_port()
    process = _start_invitations(
        nats_url, database_url, port, tmp_path / "logs", settings={"HUB_MAIL_RETRY_SECONDS": "0.2"}
    )
    late_sink: Sink | None = None
    try:
        firm, other_firm = uuid.uuid4(), uuid.uuid4()
        email = f"leaver.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
        colleague = f"stays.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
        kept = new_envelope(mailed(email), firm_id=firm, actor=Actor.service("registry"))
        elsewhere = new_envelope(mailed(email), firm_id=other_firm, actor=Actor.service("registry"))
        stays = new_envelope(mailed(colleague), firm_id=firm, actor=Actor.service("registry"))
        for envelope in (kept, elsewhere, stays):
            await publish_event(js, envelope)
        deadline = asyncio.get_running_loop().time() + 60
        while not all(_event_mail_row(database_url, e.id) for e in (kept, elsewhere, stays)):
            assert asyncio.get_running_loop().time() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.3)
        cancelled = new_envelope(cancelling(email), firm_id=firm, actor=Actor.service("registry"))
        # The address asked for again after that (invited again, back in the firm): its mail
        # goes, even when the withdrawal or removal is handled after it.
        again = new_envelope(mailed(email), firm_id=firm, actor=Actor.service("registry"))
        again = again.model_copy(update={"occurred_at": cancelled.occurred_at + timedelta(seconds=1)})
        await publish_event(js, again)
        while not _event_mail_row(database_url, again.id):
            assert asyncio.get_running_loop().time() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.3)
        await publish_event(js, cancelled)
        while (_event_mail_row(database_url, kept.id) or {}).get("message") is not None:
            assert asyncio.get_running_loop().time() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.3)

        late_sink = _start_sink(tmp_path / "late-mail", tmp_path / "sink-logs", port)
        await _mails(late_sink.folder, colleague, at_least=1, wait=30)
        # The other firm's, and the one asked for after the withdrawal or removal.
        assert len(await _mails(late_sink.folder, email, at_least=2, wait=30)) == 2
        await asyncio.sleep(1)  # rounds of the mail loop: time for the dropped one, were it sent
        assert len(await _mails(late_sink.folder, email, at_least=3, wait=0)) == 2
        dropped = _event_mail_row(database_url, kept.id)
        assert dropped is not None and dropped["message"] is None and str(dropped["last_error"]).startswith("not sent")
    finally:
        process.stop()
        if late_sink is not None:
            late_sink.process.stop()


@pytest.mark.parametrize("case", NO_LONGER_MAILED)
async def test_mail_of_an_event_handled_after_the_removal_or_withdrawal_does_not_go(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, database_url: str, case: str
) -> None:
    """The alert (or invitation) happened before the colleague's removal (or the
    invitation's withdrawal) but reaches the service only after it: delivered again after an
    outage, or taken alongside it. It is not mailed; one that happened after it is."""
    mailed, cancelling = NO_LONGER_MAILED[case]
    js = nats_connection.jetstream()
    await declare_topology(js)
    firm = uuid.uuid4()
    email = f"late.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
    cancelled = new_envelope(cancelling(email), firm_id=firm, actor=Actor.service("registry"))
    late = new_envelope(mailed(email), firm_id=firm, actor=Actor.service("registry"))
    late = late.model_copy(update={"occurred_at": cancelled.occurred_at - timedelta(seconds=5)})
    again = new_envelope(mailed(email), firm_id=firm, actor=Actor.service("registry"))
    again = again.model_copy(update={"occurred_at": cancelled.occurred_at + timedelta(seconds=1)})
    stored = await publish_event(js, cancelled)
    deadline = asyncio.get_running_loop().time() + 30
    # Handled (acknowledged) before the late event is stored.
    while (await js.consumer_info(EVENTS_STREAM, INVITATIONS_CONSUMER.durable)).ack_floor.stream_seq < stored.seq:
        assert asyncio.get_running_loop().time() < deadline, invitations.log()[-3000:]
        await asyncio.sleep(0.2)
    await publish_event(js, late)
    await publish_event(js, again)
    await _mails(sink.folder, email, at_least=1)
    await asyncio.sleep(2)  # time for the late one, were it sent
    late_row, again_row = _event_mail_row(database_url, late.id), _event_mail_row(database_url, again.id)
    assert again_row is not None and again_row["last_error"] is None, "the mail asked for after it did not go"
    assert late_row is not None and str(late_row["last_error"]).startswith("not sent"), "it was mailed"
    assert late_row["message"] is None
    assert len(await _mails(sink.folder, email, at_least=2, wait=0)) == 1


async def test_one_colleague_mail_per_invitation_even_when_stored_twice(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client
) -> None:
    js = nats_connection.jetstream()
    await declare_topology(js)
    email = f"jan.{uuid.uuid4().hex[:8]}@litware-accounting.example"
    envelope = new_envelope(_invited(email), firm_id=FIRM, actor=Actor.service("registry"))
    await publish_event(js, envelope)
    # The same event stored again past JetStream's duplicate window (a relay that lost track).
    await js.publish(envelope.subject, envelope.to_bytes(), headers={"Nats-Msg-Id": f"replayed-{envelope.id}"})
    [mail] = await _mails(sink.folder, email, at_least=1)
    await asyncio.sleep(3)  # time for a second mail, were there one
    assert len(await _mails(sink.folder, email, at_least=2, wait=0)) == 1
    assert mail.subject == "Grace de Vries invited you to Litware Accountants on Accountant Hub"


async def test_a_colleague_address_the_mail_server_refuses_is_dead_lettered_at_once(
    nats_url: str, database_url: str, nats_connection: Client, tmp_path: Path
) -> None:
    """Refused for good (550): no retry would help, so the event goes to the dead letters
    (the firm's `GET /api/v1/dead-letters`, `hub dead-letters`) on its first delivery and the mail is not kept; the
    next invitation is mailed as usual."""
    js = nats_connection.jetstream()
    await declare_topology(js)
    refusing = _start_sink(tmp_path / "mail", tmp_path / "sink-logs", refused_domain="bounces.example")
    process = _start_invitations(nats_url, database_url, refusing.port, tmp_path / "logs")
    try:
        refused = new_envelope(_invited("nobody@bounces.example"), firm_id=FIRM, actor=Actor.service("registry"))
        await publish_event(js, refused)
        subscription = await js.subscribe(
            f"deadletter.{INVITATIONS_CONSUMER.durable}.>", stream=DEAD_LETTER_STREAM, ordered_consumer=True
        )
        try:
            letters: list[dict[str, Any]] = []
            deadline = asyncio.get_running_loop().time() + 30
            while not letters:
                assert asyncio.get_running_loop().time() < deadline, process.log()[-3000:]
                with contextlib.suppress(TimeoutError):
                    message = await subscription.next_msg(timeout=1)
                    record = json.loads(message.data)
                    if str(refused.id) in record.get("payload", ""):
                        letters.append(record)
        finally:
            await subscription.unsubscribe()
        assert letters[0]["num_delivered"] == 1
        assert "mail refused" in letters[0]["error"] and "550" in letters[0]["error"]
        row = _event_mail_row(database_url, refused.id)
        assert row is not None and row["sent_at"] is None and row["message"] is None and row["last_error"]

        email = f"jan.{uuid.uuid4().hex[:8]}@litware-accounting.example"
        await publish_event(js, new_envelope(_invited(email), firm_id=FIRM, actor=Actor.service("registry")))
        assert len(await _mails(refusing.folder, email, at_least=1)) == 1
        await asyncio.sleep(2)  # two rounds of the mail loop: the refused mail is not tried again
        again = _event_mail_row(database_url, refused.id)
        assert again is not None and again["attempts"] == row["attempts"]
    finally:
        process.stop()
        refusing.process.stop()


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_a_database_outage_is_waited_out_and_the_mail_still_goes(
    database_url: str, nats_url: str, nats_connection: Client, sink: Sink, tmp_path: Path
) -> None:
    """The invitations database goes away (a proxy in front of PostgreSQL is cut) for many
    times the consumer's retry budget: the mail waits for it instead of spending its
    deliveries, and goes once the database is back; nothing is dead-lettered."""
    js = nats_connection.jetstream()
    await declare_topology(js)
    server = make_url(database_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
    through_proxy = server.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    # Ten deliveries, retried 0.05 to 0.2 s apart: spent in about two seconds were they spent.
    quick = {"HUB_RETRY_DELAY_SECONDS": "0.05", "HUB_RETRY_MAX_DELAY_SECONDS": "0.2"}
    process = _start_invitations(nats_url, through_proxy, sink.port, tmp_path / "logs", quick)
    letters = await js.subscribe(
        f"deadletter.{INVITATIONS_CONSUMER.durable}.>", stream=DEAD_LETTER_STREAM, ordered_consumer=True
    )
    try:
        email = f"ola.{uuid.uuid4().hex[:8]}@litware-accounting.example"
        invited = new_envelope(_invited(email), firm_id=FIRM, actor=Actor.service("registry"))
        proxy.cut()
        await publish_event(js, invited)
        await asyncio.sleep(6)
        assert proxy.refused > 0, "the service kept trying the database"
        proxy.restore()
        assert len(await _mails(sink.folder, email, at_least=1, wait=30)) == 1
        with contextlib.suppress(TimeoutError):
            while True:
                letter = json.loads((await letters.next_msg(timeout=1)).data)
                assert str(invited.id) not in letter.get("payload", ""), letter
    finally:
        await letters.unsubscribe()
        process.stop()
        proxy.stop()


async def test_a_mail_dropped_while_its_attempt_runs_keeps_the_reason_it_was_not_sent(database_url: str) -> None:
    """The removal comes while the mail loop's attempt is on its way to an SMTP server that
    is down: the attempt's failure wrote its SMTP error over the row's "not sent: ..." (one
    full run in a few)."""
    await asyncio.to_thread(migrate, database_url, INVITATIONS_MIGRATIONS, INVITATIONS_VERSION_TABLE)
    engine = create_async_engine(database_url)
    sessions = session_factory(engine)
    try:
        firm, event_id = uuid.uuid4(), uuid.uuid4()
        email = f"leaver.{uuid.uuid4().hex[:8]}@alerting-accounting.example"
        message = EmailMessage()
        message["To"] = email
        addressee = Addressee(firm_id=firm, email=email, kind=ALERT_MAIL, event_at=datetime.now(UTC))
        settings = InvitationsSettings(_env_file=None, database_url=database_url)
        assert await event_mail._claim(sessions, event_id, message, settings, addressee)
        dropped = await event_mail.drop_unsent_mail(
            sessions,
            firm_id=firm,
            email=email,
            kind=ALERT_MAIL,
            reason=event_mail.DROPPED_RECIPIENT_REMOVED,
            before=datetime.now(UTC),
        )
        assert dropped == 1
        await event_mail._record(sessions, event_id, sent=False, error="ConnectionRefusedError: [Errno 111]")
        row = _event_mail_row(database_url, event_id)
        assert row is not None and row["message"] is None and row["sent_at"] is not None
        assert row["last_error"] == event_mail.DROPPED_RECIPIENT_REMOVED
        assert row["claimed_until"] is None
    finally:
        await engine.dispose()
