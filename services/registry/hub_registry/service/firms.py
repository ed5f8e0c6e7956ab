"""Firms and their accountants: signing in (a first sign-in makes a firm or joins one),
inviting colleagues and withdrawing invitations."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, distinct, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from hub_common.commands import (
    AccountantIdentity,
    ColleagueInvitation,
    ColleagueInvitations,
    ColleagueInvitationWithdrawnResult,
    ColleagueRemoved,
    CommandRejected,
    EnsureAccountant,
    FirmInvitationChoice,
    FirmInvitationChoices,
    InviteColleague,
    ListColleagueInvitations,
    ListFirmInvitations,
    PendingColleagueInvitation,
    RejectionReason,
    RemoveColleague,
    WithdrawColleagueInvitation,
    refused,
)
from hub_common.db import lock_until_commit, same_mailbox
from hub_common.emails import EmailRejected, firm_name_for, mailbox_of, normalize_work_email
from hub_common.entra import TenantDirectory
from hub_common.events import (
    AccountantJoined,
    AccountantRemoved,
    Actor,
    ActorKind,
    ClientCard,
    ClientSource,
    ColleagueInvitationChanged,
    ColleagueInvitationWithdrawn,
    ColleagueInvited,
    FirmCreated,
    GrantMethod,
    Role,
)
from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_registry.models import Accountant, ColleagueInvitationRow, Firm
from hub_registry.service import alerts
from hub_registry.service.clients import insert_client, unassign_accountant
from hub_registry.service.shared import (
    SERVICE_ACTOR,
    Context,
    acting_accountant,
    emit,
    parse_url,
    resolve_tenant,
)
from hub_registry.service.tenant_grants import grant_access
from hub_registry.settings import RegistrySettings

logger = get_logger(__name__)


def _identity(accountant: Accountant, *, created: bool) -> AccountantIdentity:
    return AccountantIdentity(
        accountant_id=accountant.id,
        firm_id=accountant.firm_id,
        email=accountant.email,
        display_name=accountant.display_name,
        role=accountant.role,
        created=created,
    )


def _invitation_lifetime(settings: RegistrySettings) -> timedelta:
    return timedelta(days=settings.colleague_invitation_days)


async def _pending_invitations(
    session: AsyncSession, email: str, settings: RegistrySettings
) -> list[ColleagueInvitationRow]:
    """Every firm's invitation of the address that may still be accepted, newest first, one
    per firm: not accepted, not withdrawn, and mailed within the invitations' lifetime. One
    sent by a colleague the firm has since removed no longer counts: they could have invited
    an address of their own to come back through."""
    inviter = aliased(Accountant)
    rows = (
        (
            await session.execute(
                select(ColleagueInvitationRow)
                .join(inviter, col(inviter.id) == col(ColleagueInvitationRow.invited_by))
                .where(
                    _invited_as(email),
                    col(ColleagueInvitationRow.accepted_at).is_(None),
                    col(ColleagueInvitationRow.withdrawn_at).is_(None),
                    col(ColleagueInvitationRow.mailed_at) > datetime.now(UTC) - _invitation_lifetime(settings),
                    col(inviter.removed_at).is_(None),
                    col(inviter.firm_id) == col(ColleagueInvitationRow.firm_id),
                )
                .order_by(col(ColleagueInvitationRow.created_at).desc())
            )
        )
        .scalars()
        .all()
    )
    newest: dict[uuid.UUID, ColleagueInvitationRow] = {}
    for row in rows:
        newest.setdefault(row.firm_id, row)
    return list(newest.values())


def _invited_as(signed_in: str) -> ColumnElement[bool]:
    """Invitations sent to the address signed in with, or to a +tag of it: the mail for
    bob+hub@ lands in bob@'s mailbox (Exchange Online, Google Workspace), and Bob signs in as
    bob@. Not the other way: a sign-in name with a +tag is its own account, which an
    invitation to bob@ was not sent to."""
    if "+" in signed_in.split("@", 1)[0]:
        return col(ColleagueInvitationRow.email) == signed_in
    return same_mailbox(col(ColleagueInvitationRow.email), signed_in)


def _work_email(email: str) -> str:
    try:
        return normalize_work_email(email)
    except EmailRejected as error:
        raise refused(RejectionReason.INVALID, error.message, "email", **error.values) from error


async def list_firm_invitations(
    *, session: AsyncSession, command: ListFirmInvitations, settings: RegistrySettings
) -> FirmInvitationChoices:
    """What a first sign-in chooses between; nothing for an address that has an account."""
    email = _work_email(command.email)
    member = select(Accountant.id).where(Accountant.email == email, col(Accountant.removed_at).is_(None))
    if (await session.execute(member)).first() is not None:
        return FirmInvitationChoices(invitations=[])
    choices = []
    for invitation in await _pending_invitations(session, email, settings):
        firm = await session.get(Firm, invitation.firm_id)
        inviter = await session.get(Accountant, invitation.invited_by)
        choices.append(
            FirmInvitationChoice(
                firm_id=invitation.firm_id,
                firm_name=firm.name if firm else "a firm",
                role=invitation.role,
                # The inviter's name is whatever their own directory says; their verified
                # address, shown apart from it, tells a look-alike firm from the real one.
                invited_by=(inviter.display_name or inviter.email) if inviter else "a colleague",
                invited_by_email=inviter.email if inviter else None,
                invited_at=invitation.created_at,
            )
        )
    return FirmInvitationChoices(invitations=choices)


async def ensure_accountant(
    *, session: AsyncSession, command: EnsureAccountant, settings: RegistrySettings, directory: TenantDirectory
) -> AccountantIdentity:
    """Sign-in: an existing accountant is found; a first sign-in joins the firm it chose
    among its invitations, or gets a new firm of its own. With invitations pending, the
    choice must be explicit: an invitation alone never moves anyone into a firm."""
    email = _work_email(command.email)
    existing = (await session.execute(select(Accountant).where(Accountant.email == email))).scalar_one_or_none()
    if existing is not None:
        _bind_identity(existing, command)
        if existing.removed_at is None:
            return _identity(existing, created=False)
    invitations = await _pending_invitations(session, email, settings)
    if existing is not None and not invitations:
        raise refused(
            RejectionReason.FORBIDDEN,
            N_("An owner or admin of your firm removed your account; ask them to invite you again"),
        )
    if command.join_firm_id is not None:
        chosen = next((row for row in invitations if row.firm_id == command.join_firm_id), None)
        if chosen is None:
            raise refused(
                RejectionReason.NOT_FOUND, N_("There is no pending invitation from that firm"), "join_firm_id"
            )
        return await _join_firm(session=session, invitation=chosen, command=command, email=email, removed=existing)
    if invitations and not command.start_own_firm:
        raise refused(
            RejectionReason.CONFLICT,
            N_("Colleague invitations are waiting for this address: choose which firm to join, or start your own"),
            field="join_firm_id",
        )
    firm = Firm(name=firm_name_for(email))
    session.add(firm)
    await session.flush()
    await _coming_back(session, existing, command.correlation_id)
    accountant = _member(existing, firm.id, email, command, Role.OWNER.value)
    session.add(accountant)
    await session.flush()
    context = Context(
        firm_id=firm.id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant.id), display_name=email),
        correlation_id=command.correlation_id,
    )
    await emit(session, context, FirmCreated(name=firm.name, owner_accountant_id=accountant.id))
    await emit(
        session,
        context,
        AccountantJoined(
            accountant_id=accountant.id,
            email=email,
            display_name=accountant.display_name,
            role=Role.OWNER,
        ),
    )
    if settings.sample_client_url:
        await _add_sample_client(session, settings, directory, firm.id, command.correlation_id)
    return _identity(accountant, created=True)


async def _add_sample_client(
    session: AsyncSession,
    settings: RegistrySettings,
    directory: TenantDirectory,
    firm_id: uuid.UUID,
    correlation_id: str,
) -> None:
    """The sample client a new firm starts with. Never the reason a sign-up fails: when its
    tenant cannot be resolved now (Entra away, HUB_SAMPLE_CLIENT_URL wrong), the firm is
    made without it, all of the sample's rows undone, and the operator is told in the log."""
    card = ClientCard(name=settings.sample_client_name, client_url=settings.sample_client_url)
    service_context = Context(firm_id, SERVICE_ACTOR, correlation_id)
    try:
        async with session.begin_nested():
            sample_tenant = parse_url(card.client_url, settings).tenant
            sample_client_id = uuid.uuid4()
            sample_tenant_id = await resolve_tenant(directory, sample_tenant, asking_firm=None)
            # The sample tenant is the operator's own demo tenant, granted to every firm; the
            # grant goes first so the fetchers know of it before the ClientAdded is published.
            await grant_access(
                session,
                service_context,
                tenant_id=sample_tenant_id,
                tenant=sample_tenant,
                method=GrantMethod.SAMPLE,
                client_id=sample_client_id,
                granted_by=None,
                refresh=False,
            )
            await insert_client(
                session=session,
                context=service_context,
                card=card,
                source=ClientSource.SAMPLE,
                settings=settings,
                directory=directory,
                client_id=sample_client_id,
                known_tenant_id=sample_tenant_id,
            )
    except CommandRejected as rejected:
        logger.warning(
            "a new firm was made without its sample client",
            firm_id=str(firm_id),
            reason=rejected.rejection.message,
            sample_client_url=settings.sample_client_url,
        )


def _bind_identity(accountant: Accountant, command: EnsureAccountant) -> None:
    """An account belongs to the Entra identity it first signed in with. Another identity
    claiming its address (any tenant's administrator can give a user any email attribute)
    is refused; an account from before identities were kept is bound now."""
    if command.entra_tenant_id is None or command.entra_object_id is None:
        return
    if accountant.entra_object_id is None:
        accountant.entra_tenant_id = command.entra_tenant_id
        accountant.entra_object_id = command.entra_object_id
        return
    if (accountant.entra_tenant_id, accountant.entra_object_id) != (command.entra_tenant_id, command.entra_object_id):
        raise refused(
            RejectionReason.FORBIDDEN,
            N_(
                "%(email)s belongs to an account that signs in with another Microsoft account;"
                " sign in with that account, or ask your firm's owner"
            ),
            email=accountant.email,
        )


async def _withdraw_invitations_sent_by(
    session: AsyncSession, inviter: Accountant, *, withdrawn_by: uuid.UUID, context: Context
) -> None:
    """A removed colleague's invitations nobody accepted are withdrawn for good: hidden only
    while they were away, they came back to life when the firm invited them again (an
    admin's own second address, invited as admin, joining beside them re-invited as staff)."""
    pending = (
        await session.execute(
            select(ColleagueInvitationRow).where(
                col(ColleagueInvitationRow.invited_by) == inviter.id,
                col(ColleagueInvitationRow.accepted_at).is_(None),
                col(ColleagueInvitationRow.withdrawn_at).is_(None),
            )
        )
    ).scalars()
    await _withdraw(session, pending, withdrawn_by=withdrawn_by, context=context)


async def _withdraw(
    session: AsyncSession, invitations: Iterable[ColleagueInvitationRow], *, withdrawn_by: uuid.UUID, context: Context
) -> None:
    """Withdraw each invitation, a ColleagueInvitationWithdrawn each, in its own firm."""
    now = datetime.now(UTC)
    for invitation in invitations:
        invitation.withdrawn_at = now
        await emit(
            session,
            dataclasses.replace(context, firm_id=invitation.firm_id),
            ColleagueInvitationWithdrawn(email=invitation.email, role=Role(invitation.role), withdrawn_by=withdrawn_by),
        )


async def _withdraw_invitations_to(
    session: AsyncSession,
    accountant: Accountant,
    *,
    firm_id: uuid.UUID,
    withdrawn_by: uuid.UUID,
    context: Context,
) -> None:
    """The firm's invitations the accountant could still join through (to their address or
    a +tag of it) are withdrawn: once they joined, or were removed, such an invitation would
    only let them back in after their removal, which only a new invitation may."""
    pending = (
        await session.execute(
            select(ColleagueInvitationRow)
            .where(
                col(ColleagueInvitationRow.firm_id) == firm_id,
                _invited_as(accountant.email),
                col(ColleagueInvitationRow.accepted_at).is_(None),
                col(ColleagueInvitationRow.withdrawn_at).is_(None),
            )
            .order_by(col(ColleagueInvitationRow.id))
            .with_for_update()
        )
    ).scalars()
    await _withdraw(session, pending, withdrawn_by=withdrawn_by, context=context)


async def _coming_back(session: AsyncSession, removed: Accountant | None, correlation_id: str) -> None:
    """An account removed before its removal withdrew its invitations (a release before
    that) comes back: those are withdrawn now, before it joins anywhere."""
    if removed is None or removed.removed_at is None:
        return
    context = Context(firm_id=removed.firm_id, actor=SERVICE_ACTOR, correlation_id=correlation_id)
    await _withdraw_invitations_sent_by(session, removed, withdrawn_by=removed.id, context=context)


def _member(
    removed: Accountant | None, firm_id: uuid.UUID, email: str, command: EnsureAccountant, role: str
) -> Accountant:
    """The account joining ``firm_id``: a new one, or the one an owner or admin removed from
    a firm, brought back (its address is taken for good; its identity was checked)."""
    accountant = removed or Accountant(firm_id=firm_id, email=email, display_name=command.display_name, role=role)
    accountant.firm_id, accountant.display_name, accountant.role = firm_id, command.display_name, role
    accountant.removed_at = None
    _bind_identity(accountant, command)
    return accountant


async def _join_firm(
    *,
    session: AsyncSession,
    invitation: ColleagueInvitationRow,
    command: EnsureAccountant,
    email: str,
    removed: Accountant | None,
) -> AccountantIdentity:
    """A first sign-in (or the first since being removed) joins the firm it chose among its
    invitations, with that role."""
    # Locked and read again (PostgreSQL): an owner withdrawing it at this instant either
    # finds it accepted, or withdraws it before this sign-in may join through it.
    await session.refresh(invitation, with_for_update=True)
    if invitation.accepted_at is not None or invitation.withdrawn_at is not None:
        raise refused(RejectionReason.NOT_FOUND, N_("There is no pending invitation from that firm"), "join_firm_id")
    await _coming_back(session, removed, command.correlation_id)
    accountant = _member(removed, invitation.firm_id, email, command, invitation.role)
    session.add(accountant)
    invitation.accepted_at = datetime.now(UTC)
    await session.flush()
    context = Context(
        firm_id=invitation.firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant.id), display_name=email),
        correlation_id=command.correlation_id,
    )
    await emit(
        session,
        context,
        AccountantJoined(
            accountant_id=accountant.id, email=email, display_name=accountant.display_name, role=Role(invitation.role)
        ),
    )
    # The firm's other invitations of this mailbox (bob@ and bob+hub@ both invited) are
    # spent with this one: kept, one would let them back in after a removal.
    await _withdraw_invitations_to(
        session, accountant, firm_id=invitation.firm_id, withdrawn_by=accountant.id, context=context
    )
    return _identity(accountant, created=True)


# An address with a pending invitation is mailed again (inviting it again) after this long.
COLLEAGUE_MAIL_INTERVAL = timedelta(days=1)


async def _check_firm_mail_allowance(
    session: AsyncSession, firm_id: uuid.UUID, settings: RegistrySettings, since: datetime
) -> None:
    """Refuse a mail beyond the firm's daily allowance."""
    mailed = await session.execute(
        select(func.count())
        .select_from(ColleagueInvitationRow)
        .where(ColleagueInvitationRow.firm_id == firm_id, col(ColleagueInvitationRow.mailed_at) > since)
    )
    if int(mailed.scalar_one()) >= settings.colleague_invitations_per_firm_per_day:
        raise refused(
            RejectionReason.RATE_LIMITED,
            N_(
                "Your firm invited %(count)s colleagues in the last 24 hours, the most the hub sends;"
                " try again tomorrow."
            ),
            count=settings.colleague_invitations_per_firm_per_day,
        )


async def _check_address_mail_allowance(
    session: AsyncSession, firm_id: uuid.UUID, email: str, settings: RegistrySettings, since: datetime
) -> None:
    """Refuse a mail to an address that many other firms mailed within the day (each +tag
    of a mailbox counts as the mailbox). Firms are counted, not mails, and the inviting
    firm's own are not: a stranger's firm mailing a few +tags, or inviting, withdrawing and
    inviting again, would otherwise use up the address's day and keep its own firm from
    inviting it. Which firms is not said: the inviter may be a stranger to them."""
    mailed = await session.execute(
        select(func.count(distinct(col(ColleagueInvitationRow.firm_id)))).where(
            same_mailbox(col(ColleagueInvitationRow.email), email),
            col(ColleagueInvitationRow.mailed_at) > since,
            col(ColleagueInvitationRow.firm_id) != firm_id,
        )
    )
    if int(mailed.scalar_one()) >= settings.colleague_invitations_per_address_per_day:
        raise refused(
            RejectionReason.RATE_LIMITED,
            N_(
                "%(email)s was sent as many invitations in the last 24 hours as the hub sends one address;"
                " try again tomorrow."
            ),
            "email",
            email=email,
        )


async def invite_colleague(
    *, session: AsyncSession, command: InviteColleague, settings: RegistrySettings
) -> ColleagueInvitation:
    """Owners and admins invite by address; nobody joins a firm by email domain alone.

    An address that already has an account in another firm is answered exactly like a new
    one, so inviting cannot be used to learn who uses the hub. Each invitation mails the
    address from the hub's sender, so a firm mails an address once a day at most, a firm
    mails at most its daily allowance, and an address is mailed by a few firms a day at most
    (anyone can start a firm). Only the mail is held back: inviting an address
    again always takes the new role (an owner correcting admin to staff must not wait a
    day, and the invitee would join with the wrong role meanwhile), and the answer says
    whether the mail went.
    """
    inviter = await acting_accountant(session, command.firm_id, command.actor)
    if inviter.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise refused(RejectionReason.FORBIDDEN, N_("Only the firm's owners and admins can invite colleagues"))
    email = _work_email(command.email)
    # The firm's invitations one at a time: two replicas at once both saw no pending
    # invitation of the address, both inserted and mailed one, and both counted the same
    # daily allowance. The firm's row lock makes the second wait and then see the first's.
    # SQLite has no row locks; there the unique index of pending invitations refuses the
    # second insert (a conflict, "try again", from the command handling).
    firm = (await session.execute(select(Firm).where(Firm.id == command.firm_id).with_for_update())).scalar_one()
    member = (
        await session.execute(
            select(Accountant.firm_id).where(Accountant.email == email, col(Accountant.removed_at).is_(None))
        )
    ).first()
    if member is not None and member.firm_id == command.firm_id:
        raise refused(RejectionReason.CONFLICT, N_("%(email)s is already a member of this firm"), "email", email=email)
    # Locked (PostgreSQL): a withdrawal or a sign-in joining through it at this instant
    # commits first, and this then finds no pending invitation (and makes a new one), instead
    # of mailing one that was withdrawn or accepted meanwhile.
    pending = (
        await session.execute(
            select(ColleagueInvitationRow)
            .where(
                ColleagueInvitationRow.email == email,
                ColleagueInvitationRow.firm_id == command.firm_id,
                col(ColleagueInvitationRow.accepted_at).is_(None),
                col(ColleagueInvitationRow.withdrawn_at).is_(None),
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    now = datetime.now(UTC)
    since = now - COLLEAGUE_MAIL_INTERVAL
    if pending is not None and pending.mailed_at > since:
        if (pending.role, pending.invited_by) != (command.role, inviter.id):
            # Every change sits in the audit log, mailed or not; the same role again by the
            # same inviter changes nothing, so it is no event. The latest inviter vouches
            # for the address (an invitation of a colleague removed since counts no more).
            pending.role, pending.invited_by = command.role, inviter.id
            await emit(
                session,
                Context.of(command),
                ColleagueInvitationChanged(email=email, role=Role(command.role), changed_by=inviter.id),
            )
        return ColleagueInvitation(email=email, role=command.role, mail_sent=False)
    await _check_firm_mail_allowance(session, command.firm_id, settings, since)
    # Firms invite one address one at a time, or replicas inviting it for several firms
    # at once each count the mails before any of theirs and all mail it.
    await lock_until_commit(session, "colleague-invitation-mails:{}@{}".format(*mailbox_of(email)))
    await _check_address_mail_allowance(session, command.firm_id, email, settings, since)
    if pending is None:
        pending = ColleagueInvitationRow(firm_id=command.firm_id, email=email, role=command.role, invited_by=inviter.id)
        session.add(pending)
    pending.role, pending.invited_by = command.role, inviter.id
    pending.mailed_at = now
    await emit(
        session,
        Context.of(command),
        ColleagueInvited(
            email=email,
            role=Role(command.role),
            invited_by=inviter.id,
            firm_name=firm.name,
            inviter_name=inviter.display_name,
            language=command.language,
        ),
    )
    return ColleagueInvitation(email=email, role=command.role, mail_sent=True)


async def list_colleague_invitations(
    *, session: AsyncSession, command: ListColleagueInvitations, settings: RegistrySettings
) -> ColleagueInvitations:
    """The firm's invitations nobody accepted or withdrew, newest mail first, for its owners
    and admins. Expired ones are listed as such: they tell why someone could not join, and
    inviting the address again mails it a new one."""
    reader = await acting_accountant(session, command.firm_id, command.actor)
    if reader.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise refused(RejectionReason.FORBIDDEN, N_("Only the firm's owners and admins can see colleague invitations"))
    inviter = aliased(Accountant)
    rows = (
        await session.execute(
            select(ColleagueInvitationRow, inviter)
            .join(inviter, col(inviter.id) == col(ColleagueInvitationRow.invited_by))
            .where(
                ColleagueInvitationRow.firm_id == command.firm_id,
                col(ColleagueInvitationRow.accepted_at).is_(None),
                col(ColleagueInvitationRow.withdrawn_at).is_(None),
                # As for joining: one sent by a colleague removed since counts no more.
                col(inviter.removed_at).is_(None),
                col(inviter.firm_id) == col(ColleagueInvitationRow.firm_id),
            )
            .order_by(col(ColleagueInvitationRow.mailed_at).desc(), col(ColleagueInvitationRow.email))
        )
    ).all()
    now, lifetime = datetime.now(UTC), _invitation_lifetime(settings)
    return ColleagueInvitations(
        invitations=[
            PendingColleagueInvitation(
                invitation_id=invitation.id,
                email=invitation.email,
                role=invitation.role,
                invited_by=invitation.invited_by,
                invited_by_name=by.display_name or by.email,
                mailed_at=invitation.mailed_at,
                expires_at=invitation.mailed_at + lifetime,
                expired=invitation.mailed_at + lifetime <= now,
            )
            for invitation, by in rows
        ]
    )


async def withdraw_colleague_invitation(
    *, session: AsyncSession, command: WithdrawColleagueInvitation
) -> ColleagueInvitationWithdrawnResult:
    """Owners and admins withdraw an invitation nobody has accepted: the address can no
    longer join through it. A mail already sent still arrives; its sign-in finds no
    invitation, and starts a firm of its own if the person goes on."""
    withdrawer = await acting_accountant(session, command.firm_id, command.actor)
    if withdrawer.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise refused(RejectionReason.FORBIDDEN, N_("Only the firm's owners and admins can withdraw invitations"))
    # Locked (PostgreSQL): a sign-in joining through it at this instant waits, then finds it
    # withdrawn; or it joined first, and this finds it accepted.
    invitation = await session.get(ColleagueInvitationRow, command.invitation_id, with_for_update=True)
    if (
        invitation is None
        or invitation.firm_id != command.firm_id
        or invitation.accepted_at is not None
        or invitation.withdrawn_at is not None
    ):
        raise refused(
            RejectionReason.NOT_FOUND,
            N_("No such invitation: it was accepted or withdrawn already"),
            "invitation_id",
        )
    invitation.withdrawn_at = datetime.now(UTC)
    await emit(
        session,
        Context.of(command),
        ColleagueInvitationWithdrawn(email=invitation.email, role=Role(invitation.role), withdrawn_by=withdrawer.id),
    )
    return ColleagueInvitationWithdrawnResult(invitation_id=invitation.id, email=invitation.email)


async def remove_colleague(*, session: AsyncSession, command: RemoveColleague) -> ColleagueRemoved:
    """Owners and admins remove a colleague who left: nothing of the firm's stays reachable
    to them (the gateway ends their sessions and API tokens on the answer, and refuses any
    left on the event), their alert rules go and their clients are assigned to nobody.
    An admin cannot remove an owner, and nobody removes themselves, so a firm always keeps
    an owner."""
    remover = await acting_accountant(session, command.firm_id, command.actor)
    if remover.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise refused(RejectionReason.FORBIDDEN, N_("Only the firm's owners and admins can remove colleagues"))
    if command.accountant_id == remover.id:
        raise refused(
            RejectionReason.CONFLICT,
            N_("You cannot remove yourself; ask another owner or admin of the firm"),
            "accountant_id",
        )
    # Locked (PostgreSQL): two removals at once, or a removal beside a card save assigning
    # the colleague, see each other's outcome.
    colleague = await session.get(Accountant, command.accountant_id, with_for_update=True)
    if colleague is None or colleague.firm_id != command.firm_id or colleague.removed_at is not None:
        raise refused(RejectionReason.NOT_FOUND, N_("No such accountant"), "accountant_id")
    if colleague.role == Role.OWNER.value and remover.role != Role.OWNER.value:
        raise refused(RejectionReason.FORBIDDEN, N_("Only an owner can remove an owner"), "accountant_id")
    now = datetime.now(UTC)
    colleague.removed_at = now
    context = Context.of(command)
    await _withdraw_invitations_sent_by(session, colleague, withdrawn_by=remover.id, context=context)
    # And those sent to them (another address of their mailbox, invited while they were a
    # member): only an invitation made after the removal brings them back.
    await _withdraw_invitations_to(
        session, colleague, firm_id=command.firm_id, withdrawn_by=remover.id, context=context
    )
    # Their clients first (locked to be unassigned), then their alert rules: the order alert
    # evaluations take the two in (client, then rules), so neither waits on the other in a
    # cycle and PostgreSQL never aborts the removal as a deadlock.
    unassigned = await unassign_accountant(session, context, colleague)
    rules_removed = await alerts.forget_accountant(session, context, colleague, now=now)
    await emit(
        session, context, AccountantRemoved(accountant_id=colleague.id, email=colleague.email, removed_by=remover.id)
    )
    return ColleagueRemoved(
        accountant_id=colleague.id,
        email=colleague.email,
        alert_rules_removed=rules_removed,
        clients_unassigned=unassigned,
    )
