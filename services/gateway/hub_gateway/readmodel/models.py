"""The gateway's read model, built only from events.

Each row remembers the stream sequence of the last event applied to it, so a
redelivered, replayed or late event never takes effect twice or out of order
(invariant 2); ``ProjectionPosition`` keeps each stream's high-water mark in the same
transaction, which is what a rebuild and the lag figures read.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, ColumnElement, Date, Index, Numeric, Text, and_, text
from sqlmodel import Field, SQLModel, col

from hub_common.db import UtcDateTime


def _moment(nullable: bool = True) -> Column[datetime]:
    return Column(UtcDateTime(), nullable=nullable)


def _money() -> Column[Decimal]:
    # Room for any amount an event may carry (Money: up to 28 digits), to the cent.
    return Column(Numeric(38, 2), nullable=True)


class ProjectionPosition(SQLModel, table=True):
    __tablename__ = "gateway_positions"

    stream: str = Field(primary_key=True, max_length=50)
    sequence: int = 0


class FirmRow(SQLModel, table=True):
    """A firm's name, as a client sees it on a Connect page."""

    __tablename__ = "gateway_firms"

    firm_id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=250)
    # The firm's refresh schedule as set (JSON); None: the hub's default.
    refresh_schedule_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    events_sequence: int = 0


class AccountantRow(SQLModel, table=True):
    __tablename__ = "gateway_accountants"

    accountant_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    email: str = Field(max_length=320, index=True)
    display_name: str = Field(max_length=250)
    role: str = Field(max_length=20)
    # Removed from the firm (NULL: a member), and when last removed (kept on joining again).
    removed_at: datetime | None = Field(default=None, sa_column=_moment())
    access_ended_at: datetime | None = Field(default=None, sa_column=_moment())
    events_sequence: int = 0


class ClientRow(SQLModel, table=True):
    __tablename__ = "gateway_clients"

    client_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    name: str = Field(max_length=250)
    client_url: str = Field(max_length=2000)
    tenant: str = Field(max_length=253)
    # The tenant's directory id: what access grants are keyed on.
    tenant_id: uuid.UUID | None = Field(default=None)
    environment: str = Field(max_length=100)
    company_name: str | None = Field(default=None, max_length=250)
    card_json: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(max_length=20)
    # From the card, as a column so the dashboard can filter by it.
    assigned_accountant_id: uuid.UUID | None = Field(default=None, index=True)
    removed: bool = False
    # Client-level state: a failure before any company was found lives here.
    state: str = Field(default="queued", max_length=20)
    failure_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # While the state is "waiting": when the fetcher tries reaching the client's BC again.
    next_attempt_at: datetime | None = Field(default=None, sa_column=_moment())
    added_at: datetime = Field(sa_column=_moment(nullable=False))
    # The client's own refresh schedule (JSON); None: it follows the firm's.
    refresh_schedule_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The stream sequence of the last event applied to each part of the row: the card (its
    # ClientAdded or ClientUpdated), the schedule, the state, and the companies found. Kept
    # apart because gateway replicas project events of one stream in no order between them:
    # a newer event about one part must not make an older one about another look stale.
    events_sequence: int = 0
    schedule_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    state_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    discovery_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # When the newest list of all the client's companies was read (a whole-client discovery):
    # a company it does not name is gone from BC, and a snapshot read before it, applied late
    # or again, does not bring the company back.
    companies_listed_at: datetime | None = Field(default=None, sa_column=_moment())
    # The card's revision (ClientUpdated.accounts_revision) when it last moved to another
    # tenant or environment: a refresh's outcome of an older revision read the old place.
    moved_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The registry's count of the card's saves (ClientUpdated.card_revision; 0: not known):
    # a save checked against the card read (If-Match) asks the registry to hold it to this.
    card_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


def client_shown() -> ColumnElement[bool]:
    """A client row the firm sees: not removed, and with its card. A row kept for an event
    another replica applied before the client's ClientAdded (rules._client_applied_late)
    has no card yet, and shows once the ClientAdded or a card save is applied."""
    return and_(col(ClientRow.removed).is_(False), col(ClientRow.client_url) != "")


class TenantAccessRow(SQLModel, table=True):
    """Whether a client tenant lets the firm read it, from TenantAccessGranted/Revoked."""

    __tablename__ = "gateway_tenant_access"

    firm_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(primary_key=True)
    granted: bool
    method: str | None = Field(default=None, max_length=20)
    granted_by: str | None = Field(default=None, max_length=320)
    # Why access ended (revoked in the hub, or consent withdrawn by the client).
    reason: str | None = Field(default=None, max_length=500)
    changed_at: datetime = Field(sa_column=_moment(nullable=False))
    events_sequence: int = 0


class AlertRow(SQLModel, table=True):
    """One alert episode of a rule (AlertRaised, then AlertResolved): open until it ends."""

    __tablename__ = "gateway_alerts"
    __table_args__ = (
        Index("ix_gateway_alerts_firm_started", "firm_id", "started_at"),
        # The dashboard's markers: the open alerts of the clients on a page (migration 0023).
        Index(
            "ix_gateway_alerts_open_by_client",
            "firm_id",
            "client_id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    episode_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID
    rule_id: uuid.UUID | None = None
    rule_name: str = Field(default="", max_length=250)
    client_id: uuid.UUID
    client_name: str = Field(default="", max_length=250)
    company_id: uuid.UUID | None = None
    company_name: str | None = Field(default=None, max_length=500)
    figure: str = Field(default="", max_length=40)
    comparison: str = Field(default="", max_length=10)
    # Decimals as text: a threshold, an amount, weeks or hours, exactly as the event said.
    threshold: str = Field(default="", max_length=60)
    value: str = Field(default="", max_length=60)
    currency_code: str | None = Field(default=None, max_length=10)
    started_at: datetime | None = Field(default=None, sa_column=_moment())
    ended_at: datetime | None = Field(default=None, sa_column=_moment())
    end_reason: str | None = Field(default=None, max_length=30)
    events_sequence: int = 0


class CompanyRow(SQLModel, table=True):
    __tablename__ = "gateway_companies"
    # One index serves the dashboard's join (firm and client) and every per-firm query.
    __table_args__ = (Index("ix_gateway_companies_firm_client", "firm_id", "client_id"),)

    client_id: uuid.UUID = Field(primary_key=True)
    company_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID
    company_name: str = Field(max_length=250)
    display_name: str | None = Field(default=None, max_length=500)
    state: str = Field(default="queued", max_length=20)
    as_of: datetime | None = Field(default=None, sa_column=_moment())
    currency_code: str | None = Field(default=None, max_length=10)
    # One column per dashboard figure (readmodel/columns.py), so SQL filters, sorts and pages.
    figure_cash: Decimal | None = Field(default=None, sa_column=_money())
    figure_taxes_due: Decimal | None = Field(default=None, sa_column=_money())
    figure_open_sales_documents_count: int | None = None
    figure_open_sales_documents_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_open_sales_quotes_count: int | None = None
    figure_open_sales_quotes_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_open_sales_orders_count: int | None = None
    figure_open_sales_orders_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_unposted_sales_invoices_count: int | None = None
    figure_unposted_sales_invoices_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_purchase_invoices_due_next_week_count: int | None = None
    figure_purchase_invoices_due_next_week_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_overdue_sales_invoices_count: int | None = None
    figure_overdue_sales_invoices_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_overdue_purchase_invoices_count: int | None = None
    figure_overdue_purchase_invoices_amount: Decimal | None = Field(default=None, sa_column=_money())
    figure_sales_this_month: Decimal | None = Field(default=None, sa_column=_money())
    figure_forecast_low_point: Decimal | None = Field(default=None, sa_column=_money())
    figures_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The revision of the client card's account numbers the figures were made with
    # (CompanySnapshot.accounts_revision): figures of an older one never replace them.
    accounts_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The newest card revision whose refresh named the company (its discovery, snapshot,
    # failure or wait): a move drops the companies named only before it.
    place_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Whether the newest snapshot carried the company's exchange rates (gateway_company_rates),
    # and why not when BC did not give them.
    exchange_rates_read: bool = False
    exchange_rates_unavailable: str | None = Field(default=None, max_length=500)
    web_client_link: str | None = Field(default=None, max_length=2000)
    failure_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The refresh whose outcome (snapshot or failure) the row shows. Events and snapshots
    # travel on two streams with no order between them, so a refresh's own request or
    # discovery arriving after its outcome must not make the row look pending again.
    outcome_refresh_id: uuid.UUID | None = None
    # When the shown outcome happened (a snapshot's read time, a failure's time, or when a
    # transient failure put the row to waiting): only an event that happened later may
    # change the row's state, whatever order events arrive in.
    outcome_at: datetime | None = Field(default=None, sa_column=_moment())
    # While the state is "waiting": when the fetcher tries reading the company again.
    next_attempt_at: datetime | None = Field(default=None, sa_column=_moment())
    # How the company's changes reach the hub (BC webhooks): subscribed, polling or failed
    # (None: not subscribed, or the hub does not subscribe); the details as JSON; when the
    # fetcher last changed them, and when BC last notified a change.
    notification_state: str | None = Field(default=None, max_length=20)
    notification_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    notification_checked_at: datetime | None = Field(default=None, sa_column=_moment())
    last_change_notice_at: datetime | None = Field(default=None, sa_column=_moment())
    events_sequence: int = 0
    snapshot_sequence: int = 0
    snapshot_applied_at: datetime | None = Field(default=None, sa_column=_moment())


class CompanyRateRow(SQLModel, table=True):
    """A company's exchange rate for one currency, in effect on its newest snapshot's date:
    what converting its amounts into a reporting currency joins to."""

    __tablename__ = "gateway_company_rates"
    # The currencies a firm's companies have rates for (what a reporting currency is chosen from).
    __table_args__ = (Index("ix_gateway_company_rates_firm_currency", "firm_id", "currency_code"),)

    client_id: uuid.UUID = Field(primary_key=True)
    company_id: uuid.UUID = Field(primary_key=True)
    currency_code: str = Field(primary_key=True, max_length=10)
    firm_id: uuid.UUID
    # Local currency per unit of the currency; None: BC's rate cannot be used (zero, negative).
    lcy_per_unit: Decimal | None = Field(default=None, sa_column=Column(Numeric(31, 15), nullable=True))
    starting_date: date = Field(sa_column=Column(Date(), nullable=False))


class ConnectionTestRow(SQLModel, table=True):
    """The answer to one Test Client URL, kept for the accountant who asked."""

    __tablename__ = "gateway_connection_tests"

    test_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    client_id: uuid.UUID | None = None
    # What was tested, so Check Errors can name a test of a client not added yet.
    tenant: str | None = Field(default=None, max_length=253)
    environment: str | None = Field(default=None, max_length=100)
    # Empty until a fetcher answers.
    result_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    tested_at: datetime | None = Field(default=None, sa_column=_moment())


class FailureRow(SQLModel, table=True):
    """One failed refresh or Test Client URL, for Tools → Check Errors (kept, newest first).

    A refresh waiting to retry after a transient failure (RefreshDeferred) is listed too,
    with its next attempt, until a later outcome of the same client or company replaces it.
    """

    __tablename__ = "gateway_failures"

    # The event's id: a redelivered or replayed event finds its row and adds nothing.
    failure_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    origin: str = Field(max_length=20)  # "refresh" or "connection_test"
    client_id: uuid.UUID | None = Field(default=None, index=True)
    company_id: uuid.UUID | None = None
    company_name: str | None = Field(default=None, max_length=250)
    # The tested tenant and environment, for a test of a client not added yet.
    tenant: str | None = Field(default=None, max_length=253)
    environment: str | None = Field(default=None, max_length=100)
    kind: str = Field(max_length=50)
    failure_json: str = Field(sa_column=Column(Text, nullable=False))
    occurred_at: datetime = Field(sa_column=_moment(nullable=False))
    # Set only for a refresh waiting to retry: which attempt failed, and when the next is due.
    attempt: int | None = None
    next_attempt_at: datetime | None = Field(default=None, sa_column=_moment())


class RefreshRow(SQLModel, table=True):
    """One RefreshRequested: what "Refresh all" counts its progress against."""

    __tablename__ = "gateway_refreshes"

    refresh_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    client_id: uuid.UUID
    company_id: uuid.UUID | None = None
    # The request that asked (all refreshes of one "Refresh all" share it).
    correlation_id: str = Field(max_length=100, index=True)
    requested_at: datetime = Field(sa_column=_moment(nullable=False))
    # How many of the requested companies the refresh's discovery found (None until it
    # answered): a refresh that found none is complete with nothing to read.
    companies_found: int | None = None
    # The refresh failed as a whole (its client's BC could not be reached).
    failed: bool = False
    # The stream sequence of its RefreshRequested once applied; 0 while only later events
    # (its discovery or failure, applied first on another replica) recorded the refresh.
    request_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The state the refresh's outcome gave its client while the client was not known yet
    # (the outcome projected before its ClientAdded, on another replica), and that outcome's
    # stream sequence: the ClientAdded takes it.
    client_state: str | None = Field(default=None, max_length=20)
    client_failure_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    client_next_attempt_at: datetime | None = Field(default=None, sa_column=_moment())
    client_state_sequence: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
