"""What the invitations service does with each command, as plain functions over one session.

Every state change appends its event to the outbox in the same transaction
(invariant 1); the caller commits once at the end. A refusal raises ``CommandRejected``
and changes nothing; when it concerns an existing invitation (``AcceptanceRefused``), the
handler then records the refused attempt (``InvitationRejected``) in a transaction of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common import outbox
from hub_common.commands import (
    UNASSIGNED_FIRM,
    AcceptInvitation,
    CommandRejected,
    InvitationAcceptedResult,
    InvitationWithdrawnResult,
    ListTenantInvitations,
    PendingInvitation,
    RaiseInvitation,
    RejectionReason,
    TenantInvitations,
    WithdrawInvitation,
    refused,
    rejection,
)
from hub_common.db import lock_until_commit, same_mailbox
from hub_common.emails import EmailRejected, mailbox_of, normalize_work_email
from hub_common.events import (
    Actor,
    ActorKind,
    EventData,
    InvitationAccepted,
    InvitationCreated,
    InvitationRejected,
    InvitationWithdrawn,
    new_envelope,
)
from hub_common.i18n import N_, language_of
from hub_common.purpose_keys import Purpose
from hub_invitations.links import TamperedLink, new_token, read_link, sign_link, token_hash, token_matches
from hub_invitations.mail import InvitationMail, accept_urls
from hub_invitations.models import Invitation, InvitationStatus, RecordedRejections, invitations_outbox
from hub_invitations.settings import InvitationsSettings

# How long the handler that raised an invitation holds its mail before the retry loop may.
MAIL_CLAIM = timedelta(minutes=2)
# An SMTP exchange is up to about this many reads and writes, each given the SMTP timeout.
SMTP_ROUND_TRIPS = 10


def mail_claim(settings: InvitationsSettings) -> timedelta:
    """Longer than a send can take: a claim that ran out while its mail was still going out
    would let another sender mail a second link, and the first one delivered would no
    longer work."""
    return max(MAIL_CLAIM, timedelta(seconds=settings.smtp_timeout_seconds * SMTP_ROUND_TRIPS))


TAMPERED = N_(
    "This link was changed or is incomplete. Open it again from the invitation email, or copy the whole link."
)


@dataclass(frozen=True)
class RefusedAttempt:
    """Which existing invitation a refused acceptance was about (plain values: the
    transaction that loaded the invitation is rolled back before the attempt is recorded)."""

    invitation_id: uuid.UUID
    firm_id: uuid.UUID | None

    @classmethod
    def of(cls, invitation: Invitation) -> RefusedAttempt:
        return cls(invitation_id=invitation.id, firm_id=invitation.firm_id)


class AcceptanceRefused(CommandRejected):
    """An acceptance refused for an invitation that exists, so the refused attempt can be
    recorded in the audit log."""

    def __init__(
        self, reason: RejectionReason, message: str, field: str, *, attempt: RefusedAttempt, **values: object
    ) -> None:
        super().__init__(rejection(reason, message, field, **values))
        self.attempt = attempt


@dataclass(frozen=True)
class RaisedInvitation:
    invitation_id: uuid.UUID
    mail: InvitationMail


def normalize_email(raw: str) -> str:
    """The accountant's address: a work or school one, as for signing up."""
    try:
        return normalize_work_email(raw)
    except EmailRejected as error:
        raise refused(RejectionReason.INVALID, error.message, "accountant_email", **error.values) from error


def _one_line(text: str, field: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        raise refused(RejectionReason.INVALID, N_("This field cannot be blank"), field)
    return cleaned


def _companies(names: list[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        cleaned = name.strip()
        if cleaned and cleaned not in chosen:
            chosen.append(cleaned)
    if not chosen:
        raise refused(RejectionReason.INVALID, N_("Choose at least one company to share"), "companies")
    return chosen


def mail_for(invitation: Invitation, link: str, settings: InvitationsSettings) -> InvitationMail:
    accept_url, add_url = accept_urls(settings.public_url, link)
    return InvitationMail(
        invitation_id=str(invitation.id),
        email=invitation.email,
        accountant_name=invitation.accountant_name,
        client_name=invitation.client_name,
        environment=invitation.environment,
        companies=tuple(invitation.companies),
        welcome_text=invitation.welcome_text,
        expires_at=invitation.expires_at,
        accept_url=accept_url,
        add_url=add_url,
        language=language_of(invitation.language),
        raised_by=invitation.raised_by,
        tenant=invitation.tenant,
    )


async def _emit(
    session: AsyncSession, data: EventData, *, firm_id: uuid.UUID, actor: Actor, correlation_id: str
) -> None:
    envelope = new_envelope(data, firm_id=firm_id, actor=actor, correlation_id=correlation_id)
    await outbox.append(session, invitations_outbox, envelope)


# ---------------------------------------------------------------- raising


async def _raised_since(session: AsyncSession, condition: ColumnElement[bool], since: datetime) -> int:
    counted = await session.execute(
        select(func.count()).select_from(Invitation).where(condition, col(Invitation.created_at) > since)
    )
    return int(counted.scalar_one())


async def _check_rate(
    session: AsyncSession, tenant: str, email: str, settings: InvitationsSettings, now: datetime
) -> None:
    """Refuse an invitation beyond the day's allowance of its tenant or its address."""
    since = now - timedelta(days=1)
    if await _raised_since(session, col(Invitation.tenant) == tenant, since) >= settings.invitations_per_tenant_per_day:
        raise refused(
            RejectionReason.RATE_LIMITED,
            N_(
                "Your organisation raised %(count)s invitations in the last 24 hours, the most the hub sends;"
                " try again tomorrow."
            ),
            count=settings.invitations_per_tenant_per_day,
        )
    # Per address and tenant: another tenant flooding an address must not block the
    # accountant's real clients from inviting them. Each +tag of a mailbox is that mailbox.
    to_address = and_(col(Invitation.tenant) == tenant, same_mailbox(col(Invitation.email), email))
    if await _raised_since(session, to_address, since) >= settings.invitations_per_address_per_day:
        raise refused(
            RejectionReason.RATE_LIMITED,
            N_(
                "Your organisation invited %(email)s %(count)s times in the last 24 hours, the most the hub sends;"
                " try again tomorrow."
            ),
            "accountant_email",
            email=email,
            count=settings.invitations_per_address_per_day,
        )


async def raise_invitation(
    *,
    session: AsyncSession,
    command: RaiseInvitation,
    settings: InvitationsSettings,
    now: datetime | None = None,
) -> RaisedInvitation:
    """Create the invitation and its InvitationCreated; the caller mails the link after commit."""
    now = now or datetime.now(UTC)
    email = normalize_email(command.accountant_email)
    companies = _companies(command.companies)
    # A tenant's invitations one at a time, or replicas raising several at once each count
    # the day's invitations before any of theirs and all go past the allowance.
    await lock_until_commit(session, f"client-invitations:{command.tenant}")
    await _check_rate(session, command.tenant, email, settings, now)
    token = new_token()
    invitation = Invitation(
        token_hash=token_hash(token),
        tenant=command.tenant,
        environment=command.environment,
        client_name=_one_line(command.client_name, "client_name"),
        companies=companies,
        email=email,
        accountant_name=_one_line(command.accountant_name, "accountant_name"),
        welcome_text=command.welcome_text,
        raised_by=command.raised_by,
        language=language_of(command.language),
        created_at=now,
        expires_at=now + timedelta(days=settings.invitation_lifetime_days),
        status=InvitationStatus.PENDING.value,
        mail_claimed_until=now + mail_claim(settings),
    )
    session.add(invitation)
    await session.flush()
    await _emit(
        session,
        InvitationCreated(
            invitation_id=invitation.id,
            email=email,
            tenant=invitation.tenant,
            environment=invitation.environment,
            client_name=invitation.client_name,
            companies=companies,
            expires_at=invitation.expires_at,
        ),
        firm_id=UNASSIGNED_FIRM,
        actor=Actor(kind=ActorKind.CLIENT_ADMIN, id=command.raised_by),
        correlation_id=command.correlation_id,
    )
    link = sign_link(settings.key_for(Purpose.INVITATION_LINKS), invitation.id, token)
    return RaisedInvitation(invitation_id=invitation.id, mail=mail_for(invitation, link, settings))


# ---------------------------------------------------------------- accepting


def _date(moment: datetime) -> str:
    # Numbers only: the sentence around it is translated, an English month name would not be.
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# When the accepting firm's access to a tenant was last removed (None: it holds access, or never had it).
AccessRemovedAt = Callable[[uuid.UUID, str], Awaitable[datetime | None]]


async def accept_invitation(
    *,
    session: AsyncSession,
    command: AcceptInvitation,
    settings: InvitationsSettings,
    access_removed_at: AccessRemovedAt,
    now: datetime | None = None,
) -> InvitationAcceptedResult:
    """Turn a signed, unexpired, unused link followed by the invited address into access.

    Access the accountant's firm lost after the invitation was raised (the client withdrew
    it, its consent went, or the firm removed it) is not given back by it: a removal must
    not be undone by an older invitation; a new one, or Connect, gives access again.
    """
    now = now or datetime.now(UTC)
    try:
        parts = read_link(settings.key_for(Purpose.INVITATION_LINKS), command.token)
    except TamperedLink as error:
        raise refused(RejectionReason.INVALID, TAMPERED, "token") from error
    invitation = await session.get(Invitation, parts.invitation_id)
    if invitation is None:
        raise refused(
            RejectionReason.NOT_FOUND,
            N_("This invitation no longer exists; ask the client to invite you again."),
            "token",
        )
    if not token_matches(parts.token, invitation.token_hash):
        # The signature is ours, so this link was replaced when its mail was sent again.
        raise AcceptanceRefused(
            RejectionReason.INVALID,
            N_("This link was replaced by a newer invitation email; use the link in the newest email."),
            "token",
            attempt=RefusedAttempt.of(invitation),
        )
    if _accepted_by(invitation, command):
        # Said as it was, unless the access it gave was taken back since.
        await _refuse_if_access_removed_since_invited(invitation, command, access_removed_at)
        return _accepted_result(
            invitation, accepted_before=invitation.accepted_at, client_added=invitation.added_to_dashboard
        )
    # Before anything else about the invitation: someone else holding the link (forwarded,
    # leaked) learns from the refusal only whom it was for, not its client, who raised it,
    # or when it expired, was withdrawn or accepted. A colleague in the firm that accepted
    # it is told so: the client is that firm's already.
    accepted_by_this_firm = (
        invitation.status == InvitationStatus.ACCEPTED.value and invitation.firm_id == command.firm_id
    )
    if not _sent_to(invitation.email, command.email.strip().lower()) and not accepted_by_this_firm:
        raise AcceptanceRefused(
            RejectionReason.FORBIDDEN,
            N_(
                "This invitation was sent to %(email)s, and the hub knows you as %(signed_in)s: sign in "
                "with the address it was sent to, to accept it."
            ),
            "email",
            attempt=RefusedAttempt.of(invitation),
            email=invitation.email,
            # Entra's sign-in name where it gives no verified email: the two may differ
            # (deploy/README, "The Entra app registration").
            signed_in=command.email.strip().lower(),
        )
    if invitation.status == InvitationStatus.ACCEPTED.value:
        if invitation.accepted_at is not None:
            raise AcceptanceRefused(
                RejectionReason.CONFLICT,
                N_("This invitation was already accepted on %(day)s; each link works only once."),
                "token",
                attempt=RefusedAttempt.of(invitation),
                day=_date(invitation.accepted_at),
            )
        raise AcceptanceRefused(
            RejectionReason.CONFLICT,
            N_("This invitation was already accepted; each link works only once."),
            "token",
            attempt=RefusedAttempt.of(invitation),
        )
    if invitation.status == InvitationStatus.WITHDRAWN.value:
        raise AcceptanceRefused(
            RejectionReason.CONFLICT,
            N_("%(client)s withdrew this invitation on %(day)s; ask them to invite you again if that was a mistake."),
            "token",
            attempt=RefusedAttempt.of(invitation),
            client=invitation.client_name,
            day=_date(invitation.withdrawn_at or now),
        )
    if invitation.status != InvitationStatus.PENDING.value:
        raise AcceptanceRefused(
            RejectionReason.CONFLICT,
            N_("This invitation is %(status)s; ask %(client)s to invite you again."),
            "token",
            attempt=RefusedAttempt.of(invitation),
            status=invitation.status,
            client=invitation.client_name,
        )
    if now >= invitation.expires_at:
        raise AcceptanceRefused(
            RejectionReason.CONFLICT,
            N_("This invitation expired on %(day)s; ask %(who)s (%(client)s) to invite you again."),
            "token",
            attempt=RefusedAttempt.of(invitation),
            day=_date(invitation.expires_at),
            who=invitation.raised_by,
            client=invitation.client_name,
        )
    await _refuse_if_access_removed_since_invited(invitation, command, access_removed_at)
    changed = await session.execute(
        update(Invitation)
        .where(
            col(Invitation.id) == invitation.id,
            col(Invitation.status) == InvitationStatus.PENDING.value,
        )
        .values(
            status=InvitationStatus.ACCEPTED.value,
            accepted_at=now,
            accepted_by_accountant_id=command.accountant_id,
            added_to_dashboard=command.add_to_dashboard,
            firm_id=command.firm_id,
        )
    )
    if getattr(changed, "rowcount", 0) != 1:
        # Another acceptance of the same link committed first: the same accountant's (a
        # double click) is answered as it was; anyone else's is a refusal.
        again = await session.get(Invitation, invitation.id, populate_existing=True)
        if again is not None and _accepted_by(again, command):
            return _accepted_result(again, accepted_before=again.accepted_at, client_added=again.added_to_dashboard)
        raise refused(
            RejectionReason.CONFLICT,
            N_("This invitation was already accepted; each link works only once."),
            "token",
        )
    await _emit(
        session,
        InvitationAccepted(
            invitation_id=invitation.id,
            accountant_id=command.accountant_id,
            email=invitation.email,
            tenant=invitation.tenant,
            environment=invitation.environment,
            client_name=invitation.client_name,
            add_to_dashboard=command.add_to_dashboard,
            invited_at=invitation.created_at,
        ),
        firm_id=command.firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(command.accountant_id), display_name=command.email),
        correlation_id=command.correlation_id,
    )
    return _accepted_result(invitation, accepted_before=None, client_added=command.add_to_dashboard)


async def _refuse_if_access_removed_since_invited(
    invitation: Invitation, command: AcceptInvitation, access_removed_at: AccessRemovedAt
) -> None:
    """Access the firm lost after the invitation was raised is not given back by it (nor
    said to be there by a second click)."""
    removed_at = await access_removed_at(command.firm_id, invitation.tenant)
    if removed_at is not None and removed_at > invitation.created_at:
        raise AcceptanceRefused(
            RejectionReason.CONFLICT,
            N_(
                "Your firm's access to %(client)s was removed on %(day)s, after this invitation was sent;"
                " an invitation cannot give back access removed later. Ask %(client)s to invite you again."
            ),
            "token",
            attempt=RefusedAttempt.of(invitation),
            client=invitation.client_name,
            day=_date(removed_at),
        )


def _sent_to(invited: str, signed_in: str) -> bool:
    """Whether the accountant signed in as ``signed_in`` is the one the invitation to
    ``invited`` was mailed to: the same address, or the mailbox a +tag of it lands in
    (mail for bob+hub@ reaches bob@, who signs in as bob@). Not the other way: a sign-in
    name with a +tag is its own account."""
    if signed_in == invited:
        return True
    local, domain = mailbox_of(invited)
    return "+" not in signed_in.split("@", 1)[0] and signed_in == f"{local}@{domain}"


def _accepted_by(invitation: Invitation, command: AcceptInvitation) -> bool:
    """Whether this accountant of this firm already accepted the invitation: a second click
    or a retry is answered as the first acceptance, with nothing recorded again."""
    return (
        invitation.status == InvitationStatus.ACCEPTED.value
        and invitation.accepted_by_accountant_id == command.accountant_id
        and invitation.firm_id == command.firm_id
    )


def _accepted_result(
    invitation: Invitation, *, accepted_before: datetime | None, client_added: bool | None
) -> InvitationAcceptedResult:
    return InvitationAcceptedResult(
        invitation_id=invitation.id,
        client_name=invitation.client_name,
        tenant=invitation.tenant,
        environment=invitation.environment,
        accepted_before=accepted_before,
        client_added=client_added,
    )


def _of_tenant(tenant_id: uuid.UUID) -> ColumnElement[bool]:
    """The tenant as invitations store it: the id claim of the administrator's token (a
    GUID, which Entra writes in lower case; the upper-case spelling is matched too)."""
    return col(Invitation.tenant).in_([str(tenant_id), str(tenant_id).upper()])


async def list_tenant_invitations(*, session: AsyncSession, command: ListTenantInvitations) -> TenantInvitations:
    """The tenant's invitations nobody accepted that still work, newest first: the client's
    own people see them on /client-access, and may withdraw any."""
    rows = (
        (
            await session.execute(
                select(Invitation)
                .where(
                    _of_tenant(command.tenant_id),
                    col(Invitation.status) == InvitationStatus.PENDING.value,
                    col(Invitation.expires_at) > datetime.now(UTC),
                )
                .order_by(col(Invitation.created_at).desc())
            )
        )
        .scalars()
        .all()
    )
    return TenantInvitations(
        invitations=[
            PendingInvitation(
                invitation_id=row.id,
                email=row.email,
                accountant_name=row.accountant_name,
                environment=row.environment,
                companies=row.companies,
                raised_by=row.raised_by,
                created_at=row.created_at,
                expires_at=row.expires_at,
            )
            for row in rows
        ]
    )


async def withdraw_invitation(
    *, session: AsyncSession, command: WithdrawInvitation, now: datetime | None = None
) -> InvitationWithdrawnResult:
    """The client's people take back an invitation nobody accepted (sent to the wrong
    accountant, or no longer wanted): its links stop working, and a mail not sent yet is
    not sent. One already accepted is access, withdrawn on the same page as a firm's."""
    now = now or datetime.now(UTC)
    invitation = await session.get(Invitation, command.invitation_id)
    if invitation is None or invitation.tenant.lower() != str(command.tenant_id):
        raise refused(RejectionReason.NOT_FOUND, N_("Your organisation has no such invitation."), "invitation_id")
    # Conditional, as an acceptance is: of the two at once exactly one changes the row.
    changed = await session.execute(
        update(Invitation)
        .where(col(Invitation.id) == invitation.id, col(Invitation.status) == InvitationStatus.PENDING.value)
        .values(status=InvitationStatus.WITHDRAWN.value, withdrawn_at=now)
    )
    if getattr(changed, "rowcount", 0) != 1:
        raise refused(
            RejectionReason.CONFLICT,
            N_("This invitation was accepted or withdrawn already; a firm's access is withdrawn in the list above."),
            "invitation_id",
        )
    await _emit(
        session,
        InvitationWithdrawn(invitation_id=invitation.id),
        firm_id=UNASSIGNED_FIRM,
        actor=command.actor,
        correlation_id=command.correlation_id,
    )
    return InvitationWithdrawnResult(invitation_id=invitation.id, email=invitation.email)


# Refused acceptances of one invitation recorded per hour; more are refused all the same,
# and only logged.
REJECTIONS_RECORDED_PER_HOUR = 10
_REJECTIONS_WINDOW = timedelta(hours=1)


async def record_rejection(
    *,
    session: AsyncSession,
    attempt: RefusedAttempt,
    command: AcceptInvitation,
    reason: str,
    now: datetime | None = None,
) -> bool:
    """The audit trail of a refused acceptance: InvitationRejected, nothing else changes.

    It travels under the firm the invitation belongs to (the accepting firm once accepted,
    else the unassigned namespace), so a firm sees attempts to reuse its invitations. The
    events are kept for good and anyone holding a link can send attempts, so at most
    REJECTIONS_RECORDED_PER_HOUR of an invitation are recorded an hour; False: this one was
    not (the refusal stands).
    """
    now = now or datetime.now(UTC)
    # Locked (PostgreSQL): attempts at once on several replicas count one after another (two
    # first attempts at once both insert; the second fails, and goes unrecorded).
    counted = await session.get(RecordedRejections, attempt.invitation_id, with_for_update=True)
    if counted is None:
        counted = RecordedRejections(invitation_id=attempt.invitation_id, window_start=now)
        session.add(counted)
    elif now - counted.window_start >= _REJECTIONS_WINDOW:
        counted.window_start, counted.in_window = now, 0
    if counted.in_window >= REJECTIONS_RECORDED_PER_HOUR:
        return False
    counted.in_window += 1
    await _emit(
        session,
        InvitationRejected(invitation_id=attempt.invitation_id, reason=reason[:500]),
        firm_id=attempt.firm_id or UNASSIGNED_FIRM,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(command.accountant_id)),
        correlation_id=command.correlation_id,
    )
    return True


# ---------------------------------------------------------------- mail delivery


def mail_due(now: datetime) -> ColumnElement[bool]:
    """Pending, unexpired invitations whose mail is unsent and held by no sender."""
    return and_(
        col(Invitation.status) == InvitationStatus.PENDING.value,
        col(Invitation.mail_sent_at).is_(None),
        col(Invitation.expires_at) > now,
        or_(col(Invitation.mail_claimed_until).is_(None), col(Invitation.mail_claimed_until) <= now),
    )


async def claim_unsent_mail(
    *,
    session: AsyncSession,
    invitation_id: uuid.UUID,
    settings: InvitationsSettings,
    now: datetime | None = None,
) -> InvitationMail | None:
    """Take an unsent invitation's mail for a new attempt, with a new link.

    Only the hash of the first token was kept, so a resend issues a fresh token (the old
    link, never delivered, stops working). None when another sender holds it, or it was
    sent, accepted or expired meanwhile.
    """
    now = now or datetime.now(UTC)
    token = new_token()
    claimed = await session.execute(
        update(Invitation)
        .where(
            col(Invitation.id) == invitation_id,
            mail_due(now),
        )
        .values(token_hash=token_hash(token), mail_claimed_until=now + mail_claim(settings))
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    invitation = await session.get(Invitation, invitation_id, populate_existing=True)
    if invitation is None:  # pragma: no cover - the update above found it
        return None
    link = sign_link(settings.key_for(Purpose.INVITATION_LINKS), invitation.id, token)
    return mail_for(invitation, link, settings)
