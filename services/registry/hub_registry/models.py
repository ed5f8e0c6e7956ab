"""The registry's tables: firms, accountants, clients and the outbox of their events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

from sqlalchemy import Column, Index, text
from sqlmodel import Field, SQLModel

from hub_common.db import UtcDateTime
from hub_common.outbox import outbox_table


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp() -> Column[datetime]:
    return Column(UtcDateTime(), nullable=False, default=_now)


class Firm(SQLModel, table=True):
    __tablename__ = "registry_firms"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=250)
    # Once an owner removes the sample client it never comes back.
    sample_client_removed: bool = False
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())


class Accountant(SQLModel, table=True):
    __tablename__ = "registry_accountants"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    email: str = Field(max_length=320, unique=True)
    display_name: str = Field(max_length=250)
    role: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    # The Entra identity the account signs in with, bound at its first Entra sign-in.
    entra_tenant_id: uuid.UUID | None = None
    entra_object_id: uuid.UUID | None = None
    # When an owner or admin removed them from the firm. The row stays (the audit log, old
    # invitations and rules name it); a new invitation brings the address back, to any firm.
    removed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class Client(SQLModel, table=True):
    __tablename__ = "registry_clients"
    # One live card per client environment in a firm; removed cards stay for the audit.
    __table_args__ = (
        Index(
            "registry_clients_live_environment",
            "firm_id",
            "tenant",
            "environment",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
            postgresql_where=text("removed_at IS NULL"),
        ),
        # A domain and its GUID are one tenant: one live card per tenant id and environment.
        Index(
            "registry_clients_live_tenant_id",
            "firm_id",
            "tenant_id",
            "environment",
            unique=True,
            sqlite_where=text("removed_at IS NULL AND tenant_id IS NOT NULL"),
            postgresql_where=text("removed_at IS NULL AND tenant_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    name: str = Field(max_length=250)
    client_url: str = Field(max_length=2000)
    tenant: str = Field(max_length=253)
    # The tenant's directory id (OIDC discovery); NULL only for cards older than resolving.
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    environment: str = Field(max_length=100)
    company_name: str | None = Field(default=None, max_length=250)
    contact_name: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=4000)
    assigned_accountant_id: uuid.UUID | None = None
    # JSON list of G/L account numbers overriding the taxes-due rule, or NULL.
    tax_account_numbers: str | None = Field(default=None, max_length=4000)
    cash_account_numbers: str | None = Field(default=None, max_length=4000)
    # Counts the changes of the two above and the card's moves to another tenant or
    # environment; every refresh carries it (RefreshRequested), and its outcomes back.
    accounts_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The revision at the card's last move: an outcome of an older one read the old place.
    moved_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Counts the card's saves (ClientUpdated.card_revision): a save made on an older one is
    # refused. 1 for a new card; 0 for a card never saved since it was counted.
    card_revision: int = Field(default=1, sa_column_kwargs={"server_default": "0"})
    # The IANA zone whose date is "today" for the client's figures; NULL: UTC.
    time_zone: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    removed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


# An invitation that may still be accepted (or has expired): one per firm and address.
PENDING_INVITATION = text("accepted_at IS NULL AND withdrawn_at IS NULL")


class ColleagueInvitationRow(SQLModel, table=True):
    """A pending invitation to join a firm; the address joins on its first sign-in."""

    __tablename__ = "registry_colleague_invitations"
    __table_args__ = (
        # The firm's mails of the last day (its daily allowance).
        Index("registry_colleague_invitations_mailed", "firm_id", "mailed_at"),
        # One pending invitation per firm and address, even when two replicas invite it at once.
        Index(
            "registry_colleague_invitations_pending",
            "firm_id",
            "email",
            unique=True,
            sqlite_where=PENDING_INVITATION,
            postgresql_where=PENDING_INVITATION,
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    email: str = Field(max_length=320, index=True)
    role: str = Field(max_length=20)
    invited_by: uuid.UUID
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    # When its mail was last sent (ColleagueInvited): inviting the address again re-sends it.
    mailed_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    accepted_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # When an owner or admin withdrew it; kept, not deleted, so its mail still counts
    # against the daily allowances (inviting, withdrawing and inviting again mails again).
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class RefreshScheduleRow(SQLModel, table=True):
    """A firm's refresh schedule (no client) or one client's own."""

    __tablename__ = "registry_refresh_schedules"
    __table_args__ = (
        # One firm schedule per firm, one own schedule per client.
        Index(
            "registry_refresh_schedules_firm",
            "firm_id",
            unique=True,
            sqlite_where=text("client_id IS NULL"),
            postgresql_where=text("client_id IS NULL"),
        ),
        Index("registry_refresh_schedules_client", "client_id", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id")
    client_id: uuid.UUID | None = Field(default=None, foreign_key="registry_clients.id")
    every_minutes: int | None = None
    quiet_from: time | None = None
    quiet_until: time | None = None
    time_zone: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=_now, sa_column=_timestamp())


class ClientScheduleRun(SQLModel, table=True):
    """When a client was last refreshed on schedule: a replica that takes the lease over goes
    on from there, so failovers and rolling restarts neither skip nor repeat a refresh."""

    __tablename__ = "registry_client_schedule_runs"

    client_id: uuid.UUID = Field(foreign_key="registry_clients.id", primary_key=True)
    last_run_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # The refresh last asked for, until it has reached the client's BC (any outcome of it):
    # while the fetcher waits to retry it (BC offline or throttling, Entra away), the
    # schedule asks nothing more of the client.
    awaiting_refresh_id: uuid.UUID | None = Field(default=None)
    # The interval the last run was asked under (None: asked before it was kept, or off).
    every_seconds: int | None = Field(default=None)


# The scope of a refresh asked for by hand that is a whole client rather than one company.
WHOLE_CLIENT_REFRESH = "client"


class ManualRefresh(SQLModel, table=True):
    """The refresh an accountant (or a script with a token) last asked for, of a client or
    of one company, until its outcome: asking again while it waits is answered with it
    instead of queueing another, so no firm can fill the fetchers' shared queue."""

    __tablename__ = "registry_manual_refreshes"

    client_id: uuid.UUID = Field(foreign_key="registry_clients.id", primary_key=True)
    # WHOLE_CLIENT_REFRESH, or the company's id.
    scope: str = Field(primary_key=True, max_length=36)
    firm_id: uuid.UUID = Field(index=True)
    requested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # None once its outcome arrived (hub_registry.service.refresh_outcomes).
    awaiting_refresh_id: uuid.UUID | None = Field(default=None)
    # The card's account numbers it reads with (Client.accounts_revision): once they change,
    # the refresh on its way reads the old ones, and asking again asks anew.
    accounts_revision: int = Field(default=0)


class AcceptedInvitation(SQLModel, table=True):
    """An InvitationAccepted the registry has acted on, kept so that a redelivery of it (its
    acknowledgement lost after the commit) does nothing: an invitation is accepted once, and
    acting on it again could add back a card the accountant removed in between."""

    __tablename__ = "registry_accepted_invitations"

    invitation_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    event_id: uuid.UUID
    acted_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    # The card it added, if it added one.
    client_id: uuid.UUID | None = Field(default=None)


class ConnectionTestAsked(SQLModel, table=True):
    """A Test Client URL a firm asked for within the hour, counted against its allowance
    (RegistrySettings.connection_tests_per_firm_per_hour); older ones are deleted."""

    __tablename__ = "registry_connection_tests"
    __table_args__ = (Index("registry_connection_tests_firm_time", "firm_id", "requested_at"),)

    test_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID
    requested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class CompanyChangeRefresh(SQLModel, table=True):
    """When Business Central's change notices last asked for a refresh of a company, and
    since when a notice waits for the next one: notices arriving faster than the coalescing
    window lead to one refresh at the window's end, never to none."""

    __tablename__ = "registry_company_change_refreshes"

    client_id: uuid.UUID = Field(foreign_key="registry_clients.id", primary_key=True)
    company_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    last_requested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    pending_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    # The refresh last asked for, until its outcome (a snapshot or a failure) arrives: while
    # it is unanswered (a slow or throttled tenant) notices wait instead of asking again.
    awaiting_refresh_id: uuid.UUID | None = Field(default=None)


class TenantGrant(SQLModel, table=True):
    """A client tenant's permission for one firm to read it; revoked grants stay for the audit."""

    __tablename__ = "registry_tenant_grants"
    __table_args__ = (
        Index(
            "registry_tenant_grants_live",
            "firm_id",
            "tenant_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    tenant_id: uuid.UUID
    tenant: str = Field(max_length=253)
    method: str = Field(max_length=20)
    granted_by: str | None = Field(default=None, max_length=320)
    granted_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    # When a fetcher first read the tenant under this grant: from then on the app's consent
    # was there, so Entra later saying it is missing means the client withdrew it.
    confirmed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    revoke_reason: str | None = Field(default=None, max_length=500)


registry_outbox = outbox_table(SQLModel.metadata, "registry_outbox")


class AlertRuleRow(SQLModel, table=True):
    """An accountant's alert rule (hub_registry.domain.alerts); removed rules stay for the audit."""

    __tablename__ = "registry_alert_rules"
    __table_args__ = (
        # One rule per accountant and Idempotency-Key: a save of a new rule asked again is
        # the same rule, also when two replicas take the two asks at once.
        Index(
            "registry_alert_rules_creation_key",
            "firm_id",
            "owner_accountant_id",
            "creation_key",
            unique=True,
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    # Whose rule it is: its mail goes to them, in ``language``.
    owner_accountant_id: uuid.UUID = Field(foreign_key="registry_accountants.id")
    name: str = Field(max_length=250)
    # None: every client of the firm.
    client_id: uuid.UUID | None = Field(default=None, foreign_key="registry_clients.id")
    figure: str = Field(max_length=40)
    comparison: str = Field(max_length=10)
    # A decimal as text: SQLite keeps no exact decimals, and a threshold compares exactly.
    threshold: str = Field(max_length=60)
    email: bool = True
    webhook_url: str | None = Field(default=None, max_length=2000)
    # The webhook's HMAC secret, sealed (hub_common.sealing) and bound to the rule's id.
    webhook_secret_sealed: str | None = Field(default=None, max_length=500)
    delivery: str = Field(default="immediate", max_length=20)
    digest_at: time | None = None
    time_zone: str = Field(default="UTC", max_length=64)
    language: str = Field(default="en", max_length=35)
    # The daily digest's last run (its creation until the first).
    last_digest_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    removed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # The Idempotency-Key the rule was made under (None: none given), and what was asked
    # under it (a digest of the fields), so the same key asking for another rule is refused.
    creation_key: str | None = Field(default=None, max_length=255)
    creation_fingerprint: str | None = Field(default=None, max_length=64)


# A subject of an episode without a company: the client as a whole (a failed discovery).
WHOLE_CLIENT = "client"


class AlertEpisodeRow(SQLModel, table=True):
    """A stretch of time a rule holds for one company (or client): alerted once, at its start."""

    __tablename__ = "registry_alert_episodes"
    __table_args__ = (
        # One open episode per rule and subject: a second replica starting the same episode
        # fails its transaction, and its redelivered message then finds this one open.
        Index(
            "registry_alert_episodes_open",
            "rule_id",
            "client_id",
            "company_key",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    rule_id: uuid.UUID = Field(foreign_key="registry_alert_rules.id", index=True)
    client_id: uuid.UUID = Field(foreign_key="registry_clients.id")
    # The company's id, or WHOLE_CLIENT.
    company_key: str = Field(max_length=40)
    company_name: str | None = Field(default=None, max_length=500)
    value: str = Field(max_length=60)
    currency_code: str | None = Field(default=None, max_length=10)
    # The AlertRaised event of its start (the webhook's idempotency key).
    raised_event_id: uuid.UUID
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # Started under a daily-digest rule and not listed in a digest yet. A flag, not a time
    # window: an episode committed after a digest began is listed by the next one.
    digest_pending: bool = False


class AlertFailureRow(SQLModel, table=True):
    """Since when a company (or a client as a whole) fails to refresh, with no success after."""

    __tablename__ = "registry_alert_failures"

    client_id: uuid.UUID = Field(foreign_key="registry_clients.id", primary_key=True)
    company_key: str = Field(max_length=40, primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id", index=True)
    company_name: str | None = Field(default=None, max_length=500)
    failing_since: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class AlertPositionRow(SQLModel, table=True):
    """The latest snapshot evaluated per company (the revision of the card's account
    numbers it was made with, then its read time): an older or repeated snapshot
    (redelivered, overtaken, or made with numbers the card no longer names) changes no episode."""

    __tablename__ = "registry_alert_positions"

    client_id: uuid.UUID = Field(primary_key=True)
    company_id: uuid.UUID = Field(primary_key=True)
    read_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    accounts_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class AlertWebhookDelivery(SQLModel, table=True):
    """One signed POST of an alert to a rule's webhook, written with its AlertRaised event:
    sent at least once, retried with back-off while the receiver answers transiently."""

    __tablename__ = "registry_alert_webhook_deliveries"

    # The AlertRaised event's id: the receiver's idempotency key.
    id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(foreign_key="registry_firms.id")
    rule_id: uuid.UUID = Field(foreign_key="registry_alert_rules.id")
    url: str = Field(max_length=2000)
    body: str = Field(max_length=20000)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    # A sender holds it until then; after it (a sender died), another may send it.
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    # Given up: a permanent refusal, transient ones past the last attempt, or its rule no
    # longer naming its URL (changed or removed, or the rule removed) before it went out.
    failed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    last_error: str | None = Field(default=None, max_length=500)
