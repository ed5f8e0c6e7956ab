"""The invitations service's tables: invitations and the outbox of their events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from hub_common.db import UtcDateTime
from hub_common.outbox import outbox_table


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # The client's people withdrew it on /client-access before anyone accepted it.
    WITHDRAWN = "withdrawn"


def _now() -> datetime:
    return datetime.now(UTC)


class Invitation(SQLModel, table=True):
    __tablename__ = "invitations_invitations"
    # The daily allowance counts a tenant's and an address's invitations of the last day.
    __table_args__ = (
        Index("invitations_by_tenant", "tenant", "created_at"),
        Index("invitations_by_address", "tenant", "email", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # SHA-256 (hex) of the link's token; the token itself is never stored.
    token_hash: str = Field(max_length=64, index=True)
    tenant: str = Field(max_length=253)
    environment: str = Field(max_length=100)
    client_name: str = Field(max_length=250)
    companies: list[str] = Field(sa_column=Column(JSON, nullable=False))
    # Lower-cased; the only address that can accept.
    email: str = Field(max_length=320, index=True)
    accountant_name: str = Field(max_length=250)
    welcome_text: str | None = Field(default=None, max_length=4000)
    # The client administrator who raised it (their sign-in name).
    raised_by: str = Field(max_length=320)
    # The language its email is written in (hub_common.i18n; the administrator's).
    language: str = Field(default="en", max_length=35, sa_column_kwargs={"server_default": "en"})
    created_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(default=InvitationStatus.PENDING.value, max_length=20)
    accepted_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    accepted_by_accountant_id: uuid.UUID | None = None
    # Whether the acceptance also asked for the client on the dashboard (the link's add=1).
    added_to_dashboard: bool | None = None
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # The firm of the accountant who accepted; None until then.
    firm_id: uuid.UUID | None = None
    # Mail delivery: sent once, or retried in the background (see hub_invitations.mailer).
    mail_sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    # A sender holds the invitation's mail until then; after it, another may retry.
    mail_claimed_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    mail_attempts: int = 0
    mail_error: str | None = Field(default=None, max_length=500)


class RecordedRejections(SQLModel, table=True):
    """How many refused acceptances of an invitation went to the audit log (InvitationRejected)
    in the current hour's window: anyone holding a link could otherwise write events without
    end into a stream that is kept for good (hub_invitations.service.record_rejection). Apart
    from the invitation, which a refused attempt leaves as it was."""

    __tablename__ = "invitations_recorded_rejections"

    invitation_id: uuid.UUID = Field(primary_key=True, foreign_key="invitations_invitations.id")
    window_start: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    in_window: int = 0


invitations_outbox = outbox_table(SQLModel.metadata, "invitations_outbox")


class EventMail(SQLModel, table=True):
    """The mail an event asks for (AlertRaised, AlertDigestDue, ColleagueInvited), by the
    event's id: sent once, however often the event is delivered. A sender holds it while
    sending; after ``claimed_until`` (the sender died) another may send it."""

    # Named when it held only alert mail; kept, since a rename would break the previous
    # release's pods during a rolling upgrade.
    __tablename__ = "invitations_alert_mails"

    event_id: uuid.UUID = Field(primary_key=True)
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    # The mail as composed from its event (RFC 5322): kept until sent, so a mail SMTP did not
    # take is retried from here by the mail loop (hub_invitations.mailer), however long the
    # outage, while its event is acknowledged.
    message: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    # Whose mail it is, so one kept through an SMTP outage is dropped when it must no longer
    # go: an alert's to a colleague the firm removed since, a colleague invitation the firm
    # withdrew since. None for mail kept before these were.
    firm_id: uuid.UUID | None = None
    recipient: str | None = Field(default=None, max_length=320)
    kind: str | None = Field(default=None, max_length=20)
    event_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class MailDrop(SQLModel, table=True):
    """Mail that must no longer go to an address of a firm: every mail of an event up to
    ``dropped_before`` (a colleague removed, an invitation withdrawn then). Kept so that
    such an event handled only after the removal or withdrawal (delivered again after an
    outage, or taken alongside it) is not mailed either, not just mail already kept."""

    __tablename__ = "invitations_mail_drops"

    firm_id: uuid.UUID = Field(primary_key=True)
    recipient: str = Field(primary_key=True, max_length=320)
    kind: str = Field(primary_key=True, max_length=20)
    dropped_before: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    reason: str = Field(max_length=500)
