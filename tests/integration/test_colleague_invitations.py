"""Colleague invitations under concurrency: two registry replicas inviting the same address
at once make one pending invitation and one mail (PostgreSQL, where replicas run), and
duplicates left by the race before migration 0014 are resolved, the newest kept. Owners and
admins list the invitations nobody accepted and withdraw them; an invitation expires a
while after its last mail."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from hub_common.commands import (
    ColleagueInvitation,
    ColleagueInvitations,
    CommandRejected,
    EnsureAccountant,
    InviteColleague,
    ListColleagueInvitations,
    ListFirmInvitations,
    RejectionReason,
    RemoveColleague,
    WithdrawColleagueInvitation,
)
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import Actor, ActorKind, ColleagueInvitationWithdrawn, ColleagueInvited, Role, decode_event
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


def _actor(accountant: Accountant) -> Actor:
    return Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant.id), display_name=accountant.email)


async def _listed(sessions: async_sessionmaker[AsyncSession], reader: Accountant) -> ColleagueInvitations:
    command = ListColleagueInvitations(firm_id=reader.firm_id, actor=_actor(reader), correlation_id="c")
    async with transaction(sessions) as session:
        return await firms.list_colleague_invitations(session=session, command=command, settings=SETTINGS)


async def _withdraw(sessions: async_sessionmaker[AsyncSession], actor: Accountant, invitation_id: uuid.UUID) -> str:
    command = WithdrawColleagueInvitation(
        firm_id=actor.firm_id, actor=_actor(actor), correlation_id="c", invitation_id=invitation_id
    )
    async with transaction(sessions) as session:
        return (await firms.withdraw_colleague_invitation(session=session, command=command)).email


async def _sign_in(
    sessions: async_sessionmaker[AsyncSession],
    directory: TenantDirectory,
    email: str,
    *,
    join_firm_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """The firm a first sign-in lands in."""
    command = EnsureAccountant(email=email, display_name="Invitee", correlation_id="c", join_firm_id=join_firm_id)
    async with transaction(sessions) as session:
        return (
            await firms.ensure_accountant(session=session, command=command, settings=SETTINGS, directory=directory)
        ).firm_id


async def _choices(sessions: async_sessionmaker[AsyncSession], email: str) -> list[uuid.UUID]:
    async with transaction(sessions) as session:
        listed = await firms.list_firm_invitations(
            session=session, command=ListFirmInvitations(email=email, correlation_id="c"), settings=SETTINGS
        )
    return [choice.firm_id for choice in listed.invitations]


async def test_a_withdrawn_invitation_lets_nobody_join_and_inviting_again_mails_again(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    owner = await _firm_with_owner(registry_sessions, "withdrawing-accounting")
    invitee = "wrong.person@withdrawing-accounting.example"
    await _invite(registry_sessions, owner, invitee, "admin")
    [listed] = (await _listed(registry_sessions, owner)).invitations
    assert (listed.email, listed.role, listed.invited_by, listed.expired) == (invitee, "admin", owner.id, False)
    assert listed.expires_at - listed.mailed_at == timedelta(days=SETTINGS.colleague_invitation_days)
    assert await _choices(registry_sessions, invitee) == [owner.firm_id]

    assert await _withdraw(registry_sessions, owner, listed.invitation_id) == invitee
    assert (await _listed(registry_sessions, owner)).invitations == []
    assert await _choices(registry_sessions, invitee) == []
    with pytest.raises(CommandRejected) as refused:
        await _sign_in(registry_sessions, tenant_directory, invitee, join_firm_id=owner.firm_id)
    assert refused.value.rejection.reason == RejectionReason.NOT_FOUND
    # Twice is no twice: the second finds nothing to withdraw.
    with pytest.raises(CommandRejected) as again:
        await _withdraw(registry_sessions, owner, listed.invitation_id)
    assert again.value.rejection.reason == RejectionReason.NOT_FOUND
    async with registry_sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    withdrawn = [
        event.data for event in map(decode_event, payloads) if isinstance(event.data, ColleagueInvitationWithdrawn)
    ]
    assert [(event.email, event.role, event.withdrawn_by) for event in withdrawn] == [(invitee, Role.ADMIN, owner.id)]

    # Invited again the same day, the address is mailed again (the withdrawn mail still
    # counts against the allowances), and this invitation is the one that works.
    assert (await _invite(registry_sessions, owner, invitee, "staff")).mail_sent
    assert len(await _mails(registry_sessions)) == 2
    assert await _sign_in(registry_sessions, tenant_directory, invitee, join_firm_id=owner.firm_id) == owner.firm_id
    assert (await _listed(registry_sessions, owner)).invitations == []


async def test_only_the_firms_owners_and_admins_list_and_withdraw_its_invitations(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    owner = await _firm_with_owner(registry_sessions, "listing-accounting")
    stranger = await _firm_with_owner(registry_sessions, "stranger-accounting")
    await _invite(registry_sessions, owner, "staff.member@listing-accounting.example", "staff")
    await _sign_in(
        registry_sessions, tenant_directory, "staff.member@listing-accounting.example", join_firm_id=owner.firm_id
    )
    async with registry_sessions() as session:
        staff = (
            await session.execute(
                select(Accountant).where(Accountant.email == "staff.member@listing-accounting.example")
            )
        ).scalar_one()
    await _invite(registry_sessions, owner, "pending@listing-accounting.example", "staff")
    [pending] = (await _listed(registry_sessions, owner)).invitations

    for reader in (staff,):
        with pytest.raises(CommandRejected) as listing:
            await _listed(registry_sessions, reader)
        assert listing.value.rejection.reason == RejectionReason.FORBIDDEN
        with pytest.raises(CommandRejected) as withdrawing:
            await _withdraw(registry_sessions, reader, pending.invitation_id)
        assert withdrawing.value.rejection.reason == RejectionReason.FORBIDDEN
    # Another firm's owner neither sees it nor withdraws it by its id.
    assert (await _listed(registry_sessions, stranger)).invitations == []
    with pytest.raises(CommandRejected) as elsewhere:
        await _withdraw(registry_sessions, stranger, pending.invitation_id)
    assert elsewhere.value.rejection.reason == RejectionReason.NOT_FOUND
    assert [row.email for row in (await _listed(registry_sessions, owner)).invitations] == [pending.email]


async def test_an_invitation_expires_after_its_lifetime_and_inviting_again_renews_it(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    owner = await _firm_with_owner(registry_sessions, "expiring-accounting")
    invitee = "slow.reader@expiring-accounting.example"
    await _invite(registry_sessions, owner, invitee, "staff")
    lifetime = timedelta(days=SETTINGS.colleague_invitation_days)
    async with transaction(registry_sessions) as session:
        row = (await session.execute(select(ColleagueInvitationRow))).scalar_one()
        row.mailed_at = datetime.now(UTC) - lifetime - timedelta(minutes=1)

    [listed] = (await _listed(registry_sessions, owner)).invitations
    assert listed.expired and listed.expires_at < datetime.now(UTC)
    assert await _choices(registry_sessions, invitee) == []
    with pytest.raises(CommandRejected):
        await _sign_in(registry_sessions, tenant_directory, invitee, join_firm_id=owner.firm_id)
    # Nothing waits for the address: a sign-in starts a firm of its own, not the old one.
    assert await _sign_in(registry_sessions, tenant_directory, invitee) != owner.firm_id

    other = "another.reader@expiring-accounting.example"
    await _invite(registry_sessions, owner, other, "staff")
    async with transaction(registry_sessions) as session:
        row = (
            await session.execute(select(ColleagueInvitationRow).where(ColleagueInvitationRow.email == other))
        ).scalar_one()
        row.mailed_at = datetime.now(UTC) - lifetime - timedelta(minutes=1)
    assert (await _invite(registry_sessions, owner, other, "admin")).mail_sent
    renewed = next(row for row in (await _listed(registry_sessions, owner)).invitations if row.email == other)
    assert not renewed.expired and renewed.role == "admin"
    assert await _sign_in(registry_sessions, tenant_directory, other, join_firm_id=owner.firm_id) == owner.firm_id


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_a_withdrawal_and_a_sign_in_joining_through_it_at_once_do_not_both_happen(
    database_url: str, registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    """On two replicas at once: either the person joined and the withdrawal finds the
    invitation accepted, or it was withdrawn and the sign-in is refused; never both."""
    for attempt in range(5):
        owner = await _firm_with_owner(registry_sessions, f"racing-{attempt}")
        invitee = f"racer{attempt}@racing-{attempt}.example"
        await _invite(registry_sessions, owner, invitee, "staff")
        [pending] = (await _listed(registry_sessions, owner)).invitations
        joined, withdrawn = await asyncio.gather(
            _sign_in(registry_sessions, tenant_directory, invitee, join_firm_id=owner.firm_id),
            _withdraw(registry_sessions, owner, pending.invitation_id),
            return_exceptions=True,
        )
        assert isinstance(joined, CommandRejected) != isinstance(withdrawn, CommandRejected), (joined, withdrawn)
        async with registry_sessions() as session:
            row = await session.get(ColleagueInvitationRow, pending.invitation_id)
            member = (await session.execute(select(Accountant).where(Accountant.email == invitee))).scalar_one_or_none()
        assert row is not None
        assert (row.accepted_at is None) != (row.withdrawn_at is None)
        assert (member is not None) == (row.accepted_at is not None)


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


async def test_a_strangers_firm_cannot_use_up_an_addresses_day_for_its_own_firm(
    registry_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """One firm mailing a mailbox under several +tags, and inviting, withdrawing and
    inviting again, counts once towards the firms that may mail it in a day: the firm the
    person works for can still invite them."""
    stranger = await _firm_with_owner(registry_sessions, "stranger-accounting")
    employer = await _firm_with_owner(registry_sessions, "employer-accounting")
    mailbox = f"bob.{uuid.uuid4().hex[:8]}"
    for tag in range(SETTINGS.colleague_invitations_per_address_per_day + 1):
        assert (
            await _invite(registry_sessions, stranger, f"{mailbox}+{tag}@victim-accounting.example", "staff")
        ).mail_sent
    for _ in range(2):
        [pending] = [
            i for i in (await _listed(registry_sessions, stranger)).invitations if i.email.startswith(f"{mailbox}+0@")
        ]
        await _withdraw(registry_sessions, stranger, pending.invitation_id)
        assert (await _invite(registry_sessions, stranger, f"{mailbox}+0@victim-accounting.example", "staff")).mail_sent
    invited = await _invite(registry_sessions, employer, f"{mailbox}@victim-accounting.example", "staff")
    assert invited.mail_sent


async def test_an_invitation_to_a_tag_of_a_mailbox_is_joined_by_the_mailbox_only(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    """Mail for b_b+hub@ lands in b_b@'s mailbox, and its reader signs in as b_b@: the
    invitation is theirs. Another mailbox (bxb@: LIKE reads _ as any character) and another
    tag (b_b+other@, an account of its own) are not invited."""
    owner = await _firm_with_owner(registry_sessions, "tag-inviting-accounting")
    domain = "tag-inviting-accounting.example"
    await _invite(registry_sessions, owner, f"b_b+hub@{domain}", "staff")
    assert await _choices(registry_sessions, f"bxb@{domain}") == []
    assert await _choices(registry_sessions, f"b_b+other@{domain}") == []
    assert await _choices(registry_sessions, f"b_b@{domain}") == [owner.firm_id]
    assert await _sign_in(registry_sessions, tenant_directory, f"b_b@{domain}", join_firm_id=owner.firm_id) == (
        owner.firm_id
    )
    # An invitation to the mailbox itself is not one for a tag of it.
    await _invite(registry_sessions, owner, f"c_c@{domain}", "staff")
    assert await _choices(registry_sessions, f"c_c+x@{domain}") == []


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


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_inviting_again_while_the_invitation_is_withdrawn_mails_a_working_one_or_none(
    database_url: str, registry_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An owner withdraws an invitation while an admin invites the address again, on two
    replicas: either the invitation was mailed and then withdrawn, or it was withdrawn and a
    new one mailed, which is listed and works. Never a mail of an invitation withdrawn
    before it was sent."""
    for attempt in range(5):
        owner = await _firm_with_owner(registry_sessions, f"reinviting-{attempt}")
        invitee = f"again{attempt}@reinviting-{attempt}.example"
        await _invite(registry_sessions, owner, invitee, "staff")
        async with transaction(registry_sessions) as session:
            row = (
                await session.execute(select(ColleagueInvitationRow).where(ColleagueInvitationRow.email == invitee))
            ).scalar_one()
            row.mailed_at = datetime.now(UTC) - timedelta(days=2)  # so inviting again mails again
        [pending] = (await _listed(registry_sessions, owner)).invitations
        invited, withdrawn = await asyncio.gather(
            _invite(registry_sessions, owner, invitee, "admin"),
            _withdraw(registry_sessions, owner, pending.invitation_id),
            return_exceptions=True,
        )
        assert isinstance(invited, ColleagueInvitation) and invited.mail_sent, invited
        assert withdrawn == invitee, withdrawn
        async with registry_sessions() as session:
            payloads = (
                (await session.execute(select(registry_outbox.c.payload).order_by(registry_outbox.c.position)))
                .scalars()
                .all()
            )
        last = [
            event.data
            for event in map(decode_event, payloads)
            if isinstance(event.data, ColleagueInvited | ColleagueInvitationWithdrawn) and event.data.email == invitee
        ][-1]
        listed = [row.email for row in (await _listed(registry_sessions, owner)).invitations]
        # The last word on the address decides whether an invitation of it is pending.
        assert listed == ([invitee] if isinstance(last, ColleagueInvited) else []), (last, listed)


async def test_invitations_of_a_colleague_removed_before_they_were_withdrawn_on_removal_stay_dead_on_return(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    """A colleague removed by a release that only hid their invitations comes back: what
    they invited then is withdrawn as they return, before their own address could."""
    owner = await _firm_with_owner(registry_sessions, "returning-accounting")
    admin_email, backdoor = "ray@returning-accounting.example", "ray@ray-consulting.example"
    await _invite(registry_sessions, owner, admin_email, "admin")
    assert await _sign_in(registry_sessions, tenant_directory, admin_email, join_firm_id=owner.firm_id) == owner.firm_id
    async with registry_sessions() as session:
        admin = (await session.execute(select(Accountant).where(Accountant.email == admin_email))).scalar_one()
    await _invite(registry_sessions, admin, backdoor, "admin")
    # Removed as that release did: the account marked, its invitation left pending.
    async with transaction(registry_sessions) as session:
        stored = await session.get(Accountant, admin.id)
        assert stored is not None
        stored.removed_at = datetime.now(UTC)
    assert await _choices(registry_sessions, backdoor) == []  # hidden while they are away

    await _invite(registry_sessions, owner, admin_email, "staff")
    assert await _sign_in(registry_sessions, tenant_directory, admin_email, join_firm_id=owner.firm_id) == owner.firm_id
    assert await _choices(registry_sessions, backdoor) == []
    assert await _sign_in(registry_sessions, tenant_directory, backdoor) != owner.firm_id


async def test_a_removed_colleague_cannot_come_back_through_another_invitation_of_their_mailbox(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    """Bob was invited as bob@ and as bob+hub@ (by mistake, or the second while he was a
    member): joining through one spends the other, and his removal withdraws any sent to his
    mailbox since. Before, the other one brought him back, with its role, after his removal."""
    owner = await _firm_with_owner(registry_sessions, "twice-inviting-accounting")
    domain = "twice-inviting-accounting.example"
    bob = f"bob@{domain}"
    await _invite(registry_sessions, owner, bob, "staff")
    await _invite(registry_sessions, owner, f"bob+hub@{domain}", "admin")
    assert await _sign_in(registry_sessions, tenant_directory, bob, join_firm_id=owner.firm_id) == owner.firm_id
    assert await _choices(registry_sessions, bob) == []
    assert (await _listed(registry_sessions, owner)).invitations == [], "no invitation of a member is left pending"
    # Invited again under another tag while a member, then removed.
    await _invite(registry_sessions, owner, f"bob+later@{domain}", "admin")
    async with registry_sessions() as session:
        member = (await session.execute(select(Accountant).where(Accountant.email == bob))).scalar_one()
    removal = RemoveColleague(firm_id=owner.firm_id, actor=_actor(owner), correlation_id="c", accountant_id=member.id)
    async with transaction(registry_sessions) as session:
        await firms.remove_colleague(session=session, command=removal)

    assert await _choices(registry_sessions, bob) == []
    with pytest.raises(CommandRejected) as refused:
        await _sign_in(registry_sessions, tenant_directory, bob, join_firm_id=owner.firm_id)
    assert refused.value.rejection.reason == RejectionReason.FORBIDDEN
    assert "removed your account" in refused.value.rejection.message
    async with registry_sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    withdrawn = [
        (event.data.email, event.data.withdrawn_by)
        for event in map(decode_event, payloads)
        if isinstance(event.data, ColleagueInvitationWithdrawn)
    ]
    # He joined through the newest (bob+hub@, as admin); the other was spent by his joining.
    assert member.role == "admin"
    assert withdrawn == [(bob, member.id), (f"bob+later@{domain}", owner.id)]
    # An invitation made after the removal brings him back, as the README says.
    await _invite(registry_sessions, owner, bob, "staff")
    assert await _sign_in(registry_sessions, tenant_directory, bob, join_firm_id=owner.firm_id) == owner.firm_id
