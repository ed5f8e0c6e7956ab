"""The gateway's own records of each accountant: sessions and personal API tokens (stored only
as hashes), dashboard preferences and saved views. None of them are events."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub_common.db import UtcDateTime


class BrowserSession(SQLModel, table=True):
    __tablename__ = "gateway_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    accountant_id: uuid.UUID = Field(index=True)
    firm_id: uuid.UUID
    email: str = Field(max_length=320)
    display_name: str = Field(max_length=250)
    role: str = Field(max_length=20)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ApiToken(SQLModel, table=True):
    __tablename__ = "gateway_api_tokens"

    id: uuid.UUID = Field(primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    accountant_id: uuid.UUID = Field(index=True)
    firm_id: uuid.UUID
    email: str = Field(max_length=320)
    display_name: str = Field(max_length=250)
    role: str = Field(max_length=20)
    name: str = Field(max_length=100)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # When it stops working by itself (None: when revoked).
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class PreferencesRow(SQLModel, table=True):
    """An accountant's dashboard choices. The gateway's own, like sessions: not an event."""

    __tablename__ = "gateway_preferences"

    accountant_id: uuid.UUID = Field(primary_key=True)
    firm_id: uuid.UUID = Field(index=True)
    columns_json: str = Field(sa_column=Column(Text, nullable=False))
    locale: str | None = Field(default=None, max_length=35)
    page_size: int = 100
    # ISO 4217 code amounts are shown in; None: each company's own currency.
    reporting_currency: str | None = Field(default=None, max_length=3)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class SavedViewRow(SQLModel, table=True):
    """A named dashboard query (filters, sort, columns) an accountant saved."""

    __tablename__ = "gateway_saved_views"
    # Per firm: an accountant who left one firm for another names views afresh there.
    __table_args__ = (UniqueConstraint("accountant_id", "firm_id", "name", name="uq_gateway_saved_views_firm_name"),)

    view_id: uuid.UUID = Field(primary_key=True)
    accountant_id: uuid.UUID = Field(index=True)
    firm_id: uuid.UUID = Field(index=True)
    name: str = Field(max_length=100)
    query_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
