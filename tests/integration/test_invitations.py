"""The invitations service as it runs: `hub invitations` and `hub smtp-sink` processes, a
real NATS, SQLite and PostgreSQL.

Raise an invitation → its mail reaches the sink with both links → the invited address
accepts → InvitationAccepted on the stream. Every refused link (tampered, wrong account,
reused, expired) changes nothing, and the database never holds a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from hub_common.commands import (
    ACCEPT_INVITATION,
    LIST_TENANT_INVITATIONS,
    RAISE_INVITATION,
    UNASSIGNED_FIRM,
    WITHDRAW_INVITATION,
    AcceptInvitation,
    CommandRejected,
    InvitationAcceptedResult,
    InvitationRaised,
    InvitationWithdrawnResult,
    ListTenantInvitations,
    RaiseInvitation,
    RejectionReason,
    TenantInvitations,
    WithdrawInvitation,
    send_command,
)
from hub_common.db import sync_url
from hub_common.dev_mail import Mail, read_mailbox
from hub_common.events import Actor, ActorKind, Envelope, EventData, decode_event
from hub_common.local_nats import free_port, wait_for_port
from hub_invitations.service import REJECTIONS_RECORDED_PER_HOUR
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.postgres

TENANT = "cronus-sample.onmicrosoft.com"
SECRET_KEY = "invitations-integration-secret-long-enough"
LINK = re.compile(r"/invitations/accept\?link=([A-Za-z0-9._-]+)(&add=1)?")


@dataclass
class Sink:
    port: int
    folder: Path
    process: ServiceProcess


def _start_sink(folder: Path, logs: Path, port: int | None = None, refused_domain: str | None = None) -> Sink:
    port = port or free_port()
    settings = {"HUB_SMTP_SINK_PORT": str(port), "HUB_SMTP_SINK_DIR": str(folder)}
    if refused_domain:
        settings["HUB_SMTP_SINK_REFUSED_DOMAIN"] = refused_domain
    process = start_service(f"smtp-sink-{port}", "smtp-sink", settings, logs)
    if not wait_for_port("127.0.0.1", port, 30):
        process.stop()
        raise RuntimeError(f"the SMTP sink did not listen:\n{process.log()[-3000:]}")
    return Sink(port, folder, process)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    running = _start_sink(tmp_path_factory.mktemp("mail"), tmp_path_factory.mktemp("sink-logs"))
    yield running
    running.process.stop()


def _start_invitations(
    nats_url: str, database_url: str, smtp_port: int, logs: Path, settings: dict[str, str] | None = None
) -> ServiceProcess:
    process = start_service(
        "invitations",
        "invitations",
        {
            "HUB_NATS_URL": nats_url,
            "HUB_DATABASE_URL": database_url,
            "HUB_SMTP_HOST": "127.0.0.1",
            "HUB_SMTP_PORT": str(smtp_port),
            "HUB_SMTP_TIMEOUT_SECONDS": "3",
            "HUB_PUBLIC_URL": "http://hub.test:8000",
            "HUB_SECRET_KEY": SECRET_KEY,
            "HUB_MAIL_RETRY_SECONDS": "1",
            **(settings or {}),
        },
        logs,
    )
    deadline = time.monotonic() + 60
    while "invitations ready" not in process.log():
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"invitations did not start:\n{process.log()[-4000:]}")
        time.sleep(0.1)
    return process


@pytest.fixture
def invitations(nats_url: str, database_url: str, sink: Sink, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = _start_invitations(nats_url, database_url, sink.port, tmp_path / "logs")
    yield process
    process.stop()


@pytest.fixture
def database(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(database_url))
    yield engine
    engine.dispose()


# ------------------------------------------------------------------------- helpers


def _raise_command(email: str, **overrides: Any) -> RaiseInvitation:
    values: dict[str, Any] = {
        "tenant": TENANT,
        "environment": "Production",
        "client_name": "CRONUS Sample Client",
        "companies": ["CRONUS UK Ltd.", "CRONUS USA, Inc."],
        "accountant_email": email,
        "accountant_name": "Anna Berg",
        "welcome_text": "Hello Anna,\n\nPlease keep an eye on our books.",
        "raised_by": f"admin@{TENANT}",
        "correlation_id": f"test-{uuid.uuid4()}",
    }
    values.update(overrides)
    return RaiseInvitation(**values)


async def _raise(nats: Client, email: str, **overrides: Any) -> uuid.UUID:
    raised = await send_command(nats, RAISE_INVITATION, _raise_command(email, **overrides), InvitationRaised)
    return raised.invitation_id


@dataclass(frozen=True)
class Accountant:
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str


async def _accept(
    nats: Client, link: str, who: Accountant, *, add: bool = False
) -> InvitationAcceptedResult | CommandRejected:
    command = AcceptInvitation(
        token=link,
        accountant_id=who.accountant_id,
        firm_id=who.firm_id,
        email=who.email,
        add_to_dashboard=add,
        correlation_id=f"accept-{uuid.uuid4()}",
    )
    try:
        return await send_command(nats, ACCEPT_INVITATION, command, InvitationAcceptedResult)
    except CommandRejected as rejected:
        return rejected


async def _mail_to(folder: Path, email: str, *, count: int = 1, timeout: float = 20) -> list[Mail]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = [mail for mail in read_mailbox(folder) if email.lower() in [to.lower() for to in mail.to]]
        if len(mails) >= count:
            return mails
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {email} in {folder}")


def _links(mail: Mail) -> tuple[str, str]:
    """The accept link and the accept-and-add link, as the text part carries them."""
    assert mail.text is not None
    found = LINK.findall(mail.text)
    assert len(found) == 2, mail.text
    (accept, accept_add), (add, add_flag) = found
    assert accept == add and not accept_add and add_flag == "&add=1"
    return accept, f"{accept}&add=1"


def _row(engine: Engine, invitation_id: uuid.UUID) -> dict[str, Any]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM invitations_invitations")).mappings().all()
    found = [dict(row) for row in rows if str(row["id"]).replace("-", "") == invitation_id.hex]
    assert len(found) == 1
    return found[0]


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        invitations = connection.execute(text("SELECT count(*) FROM invitations_invitations")).scalar_one()
        events = connection.execute(text("SELECT count(*) FROM invitations_outbox")).scalar_one()
    return int(invitations), int(events)


async def _mail_recorded(engine: Engine, invitation_id: uuid.UUID, timeout: float = 10) -> dict[str, Any]:
    """The row once the service has recorded its mail as sent (just after the sink got it)."""
    deadline = time.monotonic() + timeout
    while (row := _row(engine, invitation_id))["mail_sent_at"] is None:
        assert time.monotonic() < deadline, "the sent mail was never recorded"
        await asyncio.sleep(0.05)
    return row


def _everything_stored(engine: Engine) -> str:
    with engine.connect() as connection:
        invitations = connection.execute(text("SELECT * FROM invitations_invitations")).all()
        outbox = connection.execute(text("SELECT * FROM invitations_outbox")).all()
    return repr(invitations) + repr(outbox)


async def _next_event(subscription: Any, timeout: float = 15) -> Envelope[EventData]:
    message = await subscription.next_msg(timeout=timeout)
    return decode_event(message.data)


async def _event_of(subscription: Any, invitation_id: uuid.UUID, timeout: float = 15) -> Envelope[EventData]:
    """The first event about this invitation on a subject other tests share."""
    deadline = time.monotonic() + timeout
    while True:
        event = await _next_event(subscription, max(0.1, deadline - time.monotonic()))
        if getattr(event.data, "invitation_id", None) == invitation_id:
            return event


def _assert_refused(outcome: object, reason: RejectionReason, words: str) -> None:
    assert isinstance(outcome, CommandRejected), outcome
    assert outcome.rejection.reason is reason, outcome.rejection
    assert words in outcome.rejection.message, outcome.rejection.message


def _flip(text_: str, index: int) -> str:
    return text_[:index] + ("A" if text_[index] != "A" else "B") + text_[index + 1 :]


# ------------------------------------------------------------------------- tests


async def test_invitation_from_mail_to_acceptance(
    invitations: ServiceProcess,
    sink: Sink,
    nats_connection: Client,
    jetstream: JetStreamContext,
    database: Engine,
) -> None:
    email = f"anna.berg.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    anna = Accountant(uuid.uuid4(), uuid.uuid4(), email.upper())
    created = await jetstream.subscribe(f"hub.{UNASSIGNED_FIRM}.invitation.created", ordered_consumer=True)
    unassigned_rejections = await jetstream.subscribe(
        f"hub.{UNASSIGNED_FIRM}.invitation.rejected", ordered_consumer=True
    )
    accepted = await jetstream.subscribe(f"hub.{anna.firm_id}.invitation.accepted", ordered_consumer=True)
    firm_rejections = await jetstream.subscribe(f"hub.{anna.firm_id}.invitation.rejected", ordered_consumer=True)

    invitation_id = await _raise(nats_connection, email.title())

    # InvitationCreated, raised by the client admin, in the unassigned namespace.
    event = await _event_of(created, invitation_id)
    assert event.firm_id == UNASSIGNED_FIRM
    assert event.actor.kind == "client_admin" and event.actor.id == f"admin@{TENANT}"
    assert event.data.model_dump()["email"] == email
    assert event.data.model_dump()["companies"] == ["CRONUS UK Ltd.", "CRONUS USA, Inc."]

    # The mail: BC's subject, both links in the text and the HTML.
    (mail,) = await _mail_to(sink.folder, email)
    assert mail.subject == "You have been invited to Accountant Hub by CRONUS Sample Client"
    assert "Accountant Hub" in mail.sender
    link, add_link = _links(mail)
    assert mail.html is not None and mail.text is not None
    assert f"http://hub.test:8000/invitations/accept?link={link}" in mail.html
    assert f"http://hub.test:8000/invitations/accept?link={link}&amp;add=1" in mail.html
    assert "Please keep an eye on our books." in mail.text and "CRONUS USA, Inc." in mail.text
    assert link.startswith(f"{invitation_id}.")

    # Only a hash of the token is stored; no token, no signature anywhere in the database.
    _, token, mac = link.split(".")
    row = await _mail_recorded(database, invitation_id)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    stored = _everything_stored(database)
    assert token not in stored and mac not in stored
    assert row["email"] == email and row["status"] == "pending" and row["mail_attempts"] == 1

    # Tampered: a character of the token, then of the signature.
    for tampered in (f"{invitation_id}.{_flip(token, 5)}.{mac}", f"{invitation_id}.{token}.{_flip(mac, 7)}"):
        outcome = await _accept(nats_connection, tampered, anna)
        _assert_refused(outcome, RejectionReason.INVALID, "This link was changed or is incomplete")
    # Another account: refused, names the invited address, changes nothing.
    stranger = Accountant(uuid.uuid4(), uuid.uuid4(), "someone.else@contoso-accounting.example")
    outcome = await _accept(nats_connection, link, stranger)
    _assert_refused(
        outcome,
        RejectionReason.FORBIDDEN,
        f"This invitation was sent to {email}, and the hub knows you as someone.else@contoso-accounting.example",
    )
    rejected = await _event_of(unassigned_rejections, invitation_id)
    assert rejected.actor.id == str(stranger.accountant_id)
    assert "sent to" in rejected.data.model_dump()["reason"]
    assert _row(database, invitation_id) == row

    # The invited address (in any case) accepts, and asks for the client on the dashboard.
    result = await _accept(nats_connection, add_link.split("&", 1)[0], anna, add=True)
    assert isinstance(result, InvitationAcceptedResult), result
    assert (result.invitation_id, result.client_name, result.tenant, result.environment) == (
        invitation_id,
        "CRONUS Sample Client",
        TENANT,
        "Production",
    )
    event = await _next_event(accepted)
    assert event.type == "InvitationAccepted" and event.firm_id == anna.firm_id
    assert event.actor.kind == "accountant" and event.actor.id == str(anna.accountant_id)
    accepted_data = event.data.model_dump()
    # When the client raised it: the registry gives no access by it after a withdrawal.
    invited_at = accepted_data.pop("invited_at")
    assert invited_at is not None and abs(datetime.now(UTC) - invited_at) < timedelta(minutes=5)
    assert accepted_data == {
        "invitation_id": invitation_id,
        "accountant_id": anna.accountant_id,
        "email": email,
        "tenant": TENANT,
        "environment": "Production",
        "client_name": "CRONUS Sample Client",
        "add_to_dashboard": True,
    }
    after = _row(database, invitation_id)
    assert after["status"] == "accepted"
    assert str(after["firm_id"]).replace("-", "") == anna.firm_id.hex
    assert str(after["accepted_by_accountant_id"]).replace("-", "") == anna.accountant_id.hex

    # A second click, or a retry after an answer that came too late, is answered as the
    # acceptance was, and records nothing more.
    for again in (link, add_link.split("&", 1)[0]):
        repeated = await _accept(nats_connection, again, anna, add=True)
        assert isinstance(repeated, InvitationAcceptedResult), repeated
        assert repeated.invitation_id == invitation_id and repeated.accepted_before is not None
        assert abs(datetime.now(UTC) - repeated.accepted_before) < timedelta(minutes=5)
    with pytest.raises(TimeoutError):
        await firm_rejections.next_msg(timeout=1)
    assert isinstance(repeated, InvitationAcceptedResult) and repeated.client_added is True
    # The link works once: anyone else's use is a conflict, recorded under the firm, and
    # nothing changes.
    colleague = Accountant(uuid.uuid4(), anna.firm_id, email)
    outcome = await _accept(nats_connection, link, colleague, add=True)
    _assert_refused(outcome, RejectionReason.CONFLICT, "This invitation was already accepted")
    reuse = await _next_event(firm_rejections)
    assert reuse.type == "InvitationRejected" and reuse.data.model_dump()["invitation_id"] == invitation_id
    assert _row(database, invitation_id) == after
    with pytest.raises(TimeoutError):
        await accepted.next_msg(timeout=1)
    for subscription in (created, unassigned_rejections, accepted, firm_rejections):
        await subscription.unsubscribe()


async def test_an_invitation_to_a_tag_of_a_mailbox_is_accepted_by_the_mailbox_only(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, database: Engine
) -> None:
    """Mail for cara+clients@ lands in cara@'s mailbox, whose reader signs in as cara@; a
    sign-in name with another tag is another account."""
    mailbox = f"cara.{uuid.uuid4().hex[:8]}"
    tagged = f"{mailbox}+clients@contoso-accounting.example"
    await _raise(nats_connection, tagged)
    (mail,) = await _mail_to(sink.folder, tagged)
    link, _ = _links(mail)
    other_tag = Accountant(uuid.uuid4(), uuid.uuid4(), f"{mailbox}+other@contoso-accounting.example")
    _assert_refused(await _accept(nats_connection, link, other_tag), RejectionReason.FORBIDDEN, "was sent to")
    cara = Accountant(uuid.uuid4(), uuid.uuid4(), f"{mailbox}@contoso-accounting.example")
    outcome = await _accept(nats_connection, link, cara)
    assert not isinstance(outcome, CommandRejected), outcome


async def test_expired_and_invalid_invitations_change_nothing(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, database: Engine
) -> None:
    email = f"bo.lind.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    bo = Accountant(uuid.uuid4(), uuid.uuid4(), email)
    invitation_id = await _raise(nats_connection, email)
    (mail,) = await _mail_to(sink.folder, email)
    link, _ = _links(mail)
    await _mail_recorded(database, invitation_id)

    yesterday = datetime.now(UTC) - timedelta(days=1)
    with database.begin() as connection:
        connection.execute(
            text("UPDATE invitations_invitations SET expires_at = :moment"),
            {"moment": yesterday},
        )
    before = _row(database, invitation_id)
    stranger = Accountant(uuid.uuid4(), uuid.uuid4(), "someone.else@fabrikam-audit.example")
    outcome = await _accept(nats_connection, link, stranger)
    _assert_refused(outcome, RejectionReason.FORBIDDEN, "This invitation was sent to")
    assert f"admin@{TENANT}" not in outcome.rejection.message  # type: ignore[union-attr]
    outcome = await _accept(nats_connection, link, bo)
    _assert_refused(outcome, RejectionReason.CONFLICT, "This invitation expired on")
    assert f"ask admin@{TENANT}" in outcome.rejection.message  # type: ignore[union-attr]
    assert _row(database, invitation_id) == before

    # A link for an invitation this hub never made (signed with another key) is tampered.
    forged = f"{uuid.uuid4()}.{'A' * 43}.{'B' * 43}"
    _assert_refused(await _accept(nats_connection, forged, bo), RejectionReason.INVALID, "changed or is incomplete")

    # Raising: a bad address or no company is refused and stores nothing.
    count_before = _counts(database)
    with pytest.raises(CommandRejected) as bad_email:
        await _raise(nats_connection, "not an address")
    assert bad_email.value.rejection.reason is RejectionReason.INVALID
    assert bad_email.value.rejection.field == "accountant_email"
    with pytest.raises(CommandRejected) as no_company:
        await _raise(nats_connection, email, companies=["  "])
    assert no_company.value.rejection.field == "companies"
    assert _counts(database) == count_before


async def test_the_access_alone_accepted_then_the_link_that_adds_the_client_says_so(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client
) -> None:
    email = f"gil.ross.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    gil = Accountant(uuid.uuid4(), uuid.uuid4(), email)
    await _raise(nats_connection, email)
    (mail,) = await _mail_to(sink.folder, email)
    link, add_link = _links(mail)
    first = await _accept(nats_connection, link, gil, add=False)
    assert isinstance(first, InvitationAcceptedResult) and first.client_added is False and first.accepted_before is None
    again = await _accept(nats_connection, add_link.split("&", 1)[0], gil, add=True)
    assert isinstance(again, InvitationAcceptedResult), again
    assert again.accepted_before is not None and again.client_added is False


async def test_the_clients_people_list_and_withdraw_their_tenants_invitations(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, jetstream: JetStreamContext, database: Engine
) -> None:
    tenant_id, other_tenant = uuid.uuid4(), uuid.uuid4()
    email = f"fay.lund.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    withdrawals = await jetstream.subscribe(f"hub.{UNASSIGNED_FIRM}.invitation.withdrawn", ordered_consumer=True)
    invitation_id = await _raise(nats_connection, email, tenant=str(tenant_id))
    (mail,) = await _mail_to(sink.folder, email)
    link, _ = _links(mail)

    async def listed(tenant: uuid.UUID) -> list[uuid.UUID]:
        command = ListTenantInvitations(tenant_id=tenant, correlation_id="c")
        answer = await send_command(nats_connection, LIST_TENANT_INVITATIONS, command, TenantInvitations)
        return [invitation.invitation_id for invitation in answer.invitations]

    async def withdraw(tenant: uuid.UUID) -> InvitationWithdrawnResult | CommandRejected:
        command = WithdrawInvitation(
            tenant_id=tenant,
            invitation_id=invitation_id,
            actor=Actor(kind=ActorKind.CLIENT_ADMIN, id="oid", display_name=f"it@{TENANT}"),
            correlation_id="c",
        )
        try:
            return await send_command(nats_connection, WITHDRAW_INVITATION, command, InvitationWithdrawnResult)
        except CommandRejected as rejected:
            return rejected

    assert await listed(tenant_id) == [invitation_id]
    assert await listed(other_tenant) == []
    _assert_refused(await withdraw(other_tenant), RejectionReason.NOT_FOUND, "no such invitation")
    done = await withdraw(tenant_id)
    assert isinstance(done, InvitationWithdrawnResult) and done.email == email
    event = await _event_of(withdrawals, invitation_id)
    assert event.actor.kind == "client_admin" and event.actor.display_name == f"it@{TENANT}"
    assert await listed(tenant_id) == []
    assert _row(database, invitation_id)["status"] == "withdrawn"
    _assert_refused(await withdraw(tenant_id), RejectionReason.CONFLICT, "accepted or withdrawn already")
    fay = Accountant(uuid.uuid4(), uuid.uuid4(), email)
    _assert_refused(await _accept(nats_connection, link, fay), RejectionReason.CONFLICT, "withdrew this invitation")
    # Someone else holding the link learns only whom it was for: not the client, nor that
    # or when it was withdrawn.
    stranger = Accountant(uuid.uuid4(), uuid.uuid4(), "someone.else@fabrikam-audit.example")
    refusal = await _accept(nats_connection, link, stranger)
    _assert_refused(refusal, RejectionReason.FORBIDDEN, f"This invitation was sent to {email}")
    assert "withdr" not in refusal.rejection.message  # type: ignore[union-attr]
    await withdrawals.unsubscribe()


async def test_refused_attempts_of_one_invitation_are_recorded_a_few_an_hour(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, jetstream: JetStreamContext, database: Engine
) -> None:
    """Anyone holding a link can send attempts, and the audit log is kept for good: the
    first few an hour are recorded, the rest refused all the same and only logged."""
    email = f"ed.hale.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    rejections = await jetstream.subscribe(f"hub.{UNASSIGNED_FIRM}.invitation.rejected", ordered_consumer=True)
    invitation_id = await _raise(nats_connection, email)
    (mail,) = await _mail_to(sink.folder, email)
    link, _ = _links(mail)
    stranger = Accountant(uuid.uuid4(), uuid.uuid4(), "someone.else@fabrikam-audit.example")
    attempts = REJECTIONS_RECORDED_PER_HOUR + 5
    for _ in range(attempts):
        _assert_refused(await _accept(nats_connection, link, stranger), RejectionReason.FORBIDDEN, "was sent to")
    recorded = 0
    while True:
        try:
            event = await _next_event(rejections, timeout=2)
        except TimeoutError:
            break
        recorded += getattr(event.data, "invitation_id", None) == invitation_id
    assert recorded == REJECTIONS_RECORDED_PER_HOUR
    assert "refused acceptance not recorded" in invitations.log()
    # The invitation itself is as it was: its address still accepts it.
    result = await _accept(nats_connection, link, Accountant(uuid.uuid4(), uuid.uuid4(), email))
    assert isinstance(result, InvitationAcceptedResult), result
    await rejections.unsubscribe()


async def test_mail_that_could_not_be_sent_is_retried_with_a_fresh_link(
    nats_url: str, database_url: str, nats_connection: Client, database: Engine, tmp_path: Path
) -> None:
    # No SMTP server yet on this port: the invitation is kept, its mail waits.
    port = free_port()
    process = _start_invitations(nats_url, database_url, port, tmp_path / "logs")
    late_sink: Sink | None = None
    try:
        email = f"cy.moss.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
        invitation_id = await _raise(nats_connection, email)
        deadline = time.monotonic() + 20
        while _row(database, invitation_id)["mail_error"] is None:
            assert time.monotonic() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.2)
        first = _row(database, invitation_id)
        assert first["status"] == "pending" and first["mail_sent_at"] is None

        # The server comes up: the retry loop sends the mail, with a new token.
        late_sink = _start_sink(tmp_path / "late-mail", tmp_path / "logs", port)
        (mail,) = await _mail_to(late_sink.folder, email, timeout=30)
        link, _ = _links(mail)
        sent = await _mail_recorded(database, invitation_id)
        assert sent["mail_sent_at"] is not None and sent["mail_error"] is None
        assert sent["token_hash"] != first["token_hash"]
        assert sent["token_hash"] == hashlib.sha256(link.split(".")[1].encode()).hexdigest()

        result = await _accept(nats_connection, link, Accountant(uuid.uuid4(), uuid.uuid4(), email))
        assert isinstance(result, InvitationAcceptedResult), result
    finally:
        process.stop()
        if late_sink is not None:
            late_sink.process.stop()


async def test_an_address_the_server_refuses_does_not_hold_up_the_other_mail(
    nats_url: str, database_url: str, nats_connection: Client, database: Engine, tmp_path: Path
) -> None:
    """SMTP comes back after an outage, but refuses one address for good: the other
    invitations' mail still goes out, while the refused one is kept and retried behind them."""
    port = free_port()
    process = _start_invitations(nats_url, database_url, port, tmp_path / "logs")
    late_sink: Sink | None = None
    try:
        unknown = f"nobody.{uuid.uuid4().hex[:8]}@bounces.example"
        kept = f"di.moss.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
        # Oldest first: before the fix, the refused mail was first in every round and the
        # round ended at it.
        refused_id = await _raise(nats_connection, unknown)
        kept_id = await _raise(nats_connection, kept)
        deadline = time.monotonic() + 20
        while _row(database, refused_id)["mail_error"] is None or _row(database, kept_id)["mail_error"] is None:
            assert time.monotonic() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.2)

        late_sink = _start_sink(tmp_path / "late-mail", tmp_path / "logs", port, refused_domain="bounces.example")
        await _mail_to(late_sink.folder, kept, timeout=30)
        assert (await _mail_recorded(database, kept_id))["mail_sent_at"] is not None
        refused = _row(database, refused_id)
        assert refused["mail_sent_at"] is None and refused["status"] == "pending"
        assert "550" in (refused["mail_error"] or ""), refused
    finally:
        process.stop()
        if late_sink is not None:
            late_sink.process.stop()


async def test_the_mail_is_in_the_invitations_language(
    invitations: ServiceProcess, sink: Sink, nats_connection: Client, database: Engine
) -> None:
    """The language the invitation was raised in (the client administrator's) is stored with
    it, and its mail is written in it."""
    email = f"sanne.de.vries.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
    invitation_id = await _raise(nats_connection, email, language="nl-NL")
    (mail,) = await _mail_to(sink.folder, email)
    assert mail.subject == "U bent door CRONUS Sample Client uitgenodigd voor Accountant Hub"
    assert mail.text is not None and "Toegang accepteren:" in mail.text
    assert (await _mail_recorded(database, invitation_id))["language"] == "nl"


async def test_a_tenant_and_an_address_get_a_daily_allowance_of_invitations(
    nats_url: str, database_url: str, nats_connection: Client, sink: Sink, database: Engine, tmp_path: Path
) -> None:
    """Any Entra tenant's administrator can make the hub mail anyone: a tenant gets so many
    invitations a day, and so does an address, then a clear refusal that stores nothing."""
    allowance = {"HUB_INVITATIONS_PER_TENANT_PER_DAY": "3", "HUB_INVITATIONS_PER_ADDRESS_PER_DAY": "2"}
    process = _start_invitations(nats_url, database_url, sink.port, tmp_path / "logs", allowance)
    tenant = str(uuid.uuid4())
    try:
        address = f"eve.moss.{uuid.uuid4().hex[:8]}@contoso-accounting.example"
        # A +tag of the mailbox is the mailbox (its mail lands there): it counts with it.
        for raised_to in (address, address.replace("@", "+ledger@")):
            await _raise(nats_connection, raised_to, tenant=tenant)
        stored = _counts(database)
        with pytest.raises(CommandRejected) as to_the_address:
            await _raise(nats_connection, address, tenant=tenant)
        _assert_refused(to_the_address.value, RejectionReason.RATE_LIMITED, "2 times in the last 24 hours")
        assert to_the_address.value.rejection.field == "accountant_email"
        assert _counts(database) == stored, "a refused invitation stores nothing"
        # Another tenant (the accountant's real client) may still invite that address.
        await _raise(nats_connection, address, tenant=str(uuid.uuid4()))

        await _raise(nats_connection, f"fay.{uuid.uuid4().hex[:8]}@contoso-accounting.example", tenant=tenant)
        with pytest.raises(CommandRejected) as from_the_tenant:
            await _raise(nats_connection, f"gus.{uuid.uuid4().hex[:8]}@contoso-accounting.example", tenant=tenant)
        _assert_refused(
            from_the_tenant.value, RejectionReason.RATE_LIMITED, "raised 3 invitations in the last 24 hours"
        )
        # Another tenant has its own allowance.
        await _raise(
            nats_connection, f"hal.{uuid.uuid4().hex[:8]}@contoso-accounting.example", tenant=str(uuid.uuid4())
        )
    finally:
        process.stop()
