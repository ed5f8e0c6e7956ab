"""Colleague invitations under concurrency: two registry replicas inviting the same address
at once make one pending invitation and one mail (PostgreSQL, where replicas run), and
duplicates left by the race before migration 0014 are resolved, the newest kept."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from hub_common.commands import ColleagueInvitation, CommandRejected, InviteColleague
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import Actor, ActorKind, ColleagueInvited, Role, decode_event
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Accountant, ColleagueInvitationRow, Firm, registry_outbox
from hub_registry.service import firms
from hub_registry.settings import RegistrySettings
from tests.conftest import POSTGRESQL_ONLY
from tests.support.registry_rows import insert_old_firm

SETTINGS = RegistrySettings(_env_file=None, bc_web_client="https://businesscentral.dynamics.com")


async def _firm_with_owner(
    sessions: async_sessionmaker[AsyncSession], domain: str = "concurrent-accounting"
) -> Accountant:
    firm = Firm(name="Concurrent Accounting")
    owner = Accountant(firm_id=firm.id, email=f"owner@{domain}.example", display_name="Owner", role="owner")
    async with transaction(sessions) as session:
        session.add(firm)
        await session.flush()
        session.add(owner)
    return owner


async def _invite(
    sessions: async_sessionmaker[AsyncSession], owner: Accountant, email: str, role: str
) -> ColleagueInvitation:
    command = InviteColleague(
        firm_id=owner.firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(owner.id), display_name=owner.email),
        correlation_id="c",
        email=email,
        role=role,
    )
    async with transaction(sessions) as session:
        return await firms.invite_colleague(session=session, command=command, settings=SETTINGS)


async def _mails(sessions: async_sessionmaker[AsyncSession]) -> list[ColleagueInvited]:
    async with sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    return [event.data for event in map(decode_event, payloads) if isinstance(event.data, ColleagueInvited)]


# Replicas share PostgreSQL; SQLite's one registry is refused by the unique index instead.
@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_two_replicas_inviting_one_address_at_once_make_one_invitation_and_one_mail(
    database_url: str, registry_sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await _firm_with_owner(registry_sessions)
    invitee = "Pat@Concurrent-Accounting.example"
    # Each call its own session and connection, as on two replicas.
    answers = await asyncio.gather(
        _invite(registry_sessions, owner, invitee, "admin"), _invite(registry_sessions, owner, invitee, "staff")
    )
    assert sorted(answer.mail_sent for answer in answers) == [False, True]
    async with registry_sessions() as session:
        rows = (await session.execute(select(ColleagueInvitationRow))).scalars().all()
    assert len(rows) == 1
    assert len(await _mails(registry_sessions)) == 1
    # A third invitation finds the one row (it failed on two before) and updates its role.
    third = await _invite(registry_sessions, owner, invitee, "staff")
    assert third.mail_sent is False
    async with registry_sessions() as session:
        stored = (await session.execute(select(ColleagueInvitationRow))).scalar_one()
    assert stored.role == Role.STAFF.value
    assert len(await _mails(registry_sessions)) == 1


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_firms_inviting_one_address_at_once_mail_it_no_more_than_its_daily_allowance(
    database_url: str, registry_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Anyone can start a firm: six firms inviting one address at once, through replicas,
    mail it as often as the hub mails one address a day, and the others are refused."""
    owners = [await _firm_with_owner(registry_sessions, f"firm-{number}") for number in range(6)]
    invitee = f"target.{uuid.uuid4().hex[:8]}@victim-accounting.example"
    answers = await asyncio.gather(
        *(_invite(registry_sessions, owner, invitee, "staff") for owner in owners), return_exceptions=True
    )
    mailed = [answer for answer in answers if isinstance(answer, ColleagueInvitation) and answer.mail_sent]
    refused = [answer for answer in answers if isinstance(answer, CommandRejected)]
    assert len(mailed) == SETTINGS.colleague_invitations_per_address_per_day, answers
    assert len(refused) == len(owners) - len(mailed), answers
    assert len(await _mails(registry_sessions)) == len(mailed)


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_tags_of_one_mailbox_count_as_the_mailbox(
    database_url: str, registry_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Exchange Online and Google Workspace deliver bob+1@ and bob+2@ to bob@: firms inviting
    a mailbox under tags of it, at once, mail it no more than the mailbox's daily allowance.
    Another mailbox of the domain (bobby@, and an underscore that LIKE would read as any
    character) is not counted with it."""
    owners = [await _firm_with_owner(registry_sessions, f"tagging-{number}") for number in range(6)]
    mailbox = f"b_b.{uuid.uuid4().hex[:8]}"
    answers = await asyncio.gather(
        *(
            _invite(registry_sessions, owner, f"{mailbox}+{number}@victim-accounting.example", "staff")
            for number, owner in enumerate(owners)
        ),
        return_exceptions=True,
    )
    mailed = [answer for answer in answers if isinstance(answer, ColleagueInvitation) and answer.mail_sent]
    assert len(mailed) == SETTINGS.colleague_invitations_per_address_per_day, answers
    assert all(isinstance(answer, ColleagueInvitation | CommandRejected) for answer in answers), answers
    neighbour = mailbox.replace("_", "x")
    other = await _invite(registry_sessions, owners[0], f"{neighbour}@victim-accounting.example", "staff")
    assert other.mail_sent


async def test_duplicate_pending_invitations_from_before_keep_the_newest(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0013")
    firm, inviter = uuid.uuid4(), uuid.uuid4()
    older, newer, accepted, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await insert_old_firm(connection, firm)
            for row, email, role, created, accepted_at in (
                (older, "dup@old-firm.example", "admin", "2026-11-01 10:00:00", None),
                (newer, "dup@old-firm.example", "staff", "2026-11-01 10:00:01", None),
                (accepted, "dup@old-firm.example", "staff", "2026-10-01 10:00:00", "2026-10-02 10:00:00"),
                (other, "else@old-firm.example", "staff", "2026-11-01 10:00:00", None),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO registry_colleague_invitations (id, firm_id, email, role, invited_by,"
                        " created_at, mailed_at, accepted_at) VALUES (:id, :firm, :email, :role, :by, :created,"
                        " :created, :accepted)"
                    ),
                    {
                        "id": row.hex,
                        "firm": firm.hex,
                        "email": email,
                        "role": role,
                        "by": inviter.hex,
                        "created": created,
                        "accepted": accepted_at,
                    },
                )
        await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
        async with session_factory(engine)() as session:
            kept = {row.id for row in (await session.execute(select(ColleagueInvitationRow))).scalars()}
        assert kept == {newer, accepted, other}
        # The index now refuses a second pending invitation of the address.
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO registry_colleague_invitations (id, firm_id, email, role, invited_by,"
                        " created_at, mailed_at) VALUES (:id, :firm, 'dup@old-firm.example', 'staff', :by,"
                        " '2026-11-02 10:00:00', '2026-11-02 10:00:00')"
                    ),
                    {"id": uuid.uuid4().hex, "firm": firm.hex, "by": inviter.hex},
                )
    finally:
        await engine.dispose()
