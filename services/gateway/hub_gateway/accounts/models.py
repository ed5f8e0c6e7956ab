"""Sessions and personal API tokens: the gateway's own credentials, stored only as hashes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
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
