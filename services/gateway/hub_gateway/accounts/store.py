"""Issuing and checking sessions and personal API tokens.

Only a SHA-256 of each secret is stored, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.accounts.models import ApiToken, BrowserSession
from hub_gateway.auth import Principal

API_TOKEN_PREFIX = "hub_pat_"  # noqa: S105 - a recognisable prefix, not a secret
SESSION_LIFETIME = timedelta(days=7)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def open_session(session: AsyncSession, principal: Principal) -> tuple[str, BrowserSession]:
    """A new browser session; returns the cookie value (never stored) and the row."""
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = BrowserSession(
        token_hash=digest(secret),
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    return secret, row


async def find_session(session: AsyncSession, secret: str) -> BrowserSession | None:
    row = await session.get(BrowserSession, digest(secret))
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    return row


async def close_session(session: AsyncSession, secret: str) -> None:
    row = await session.get(BrowserSession, digest(secret))
    if row is not None:
        await session.delete(row)


def csrf_matches(row: BrowserSession, offered: str | None) -> bool:
    # Compared as UTF-8 bytes: compare_digest refuses a str with non-ASCII characters (a
    # TypeError, so a 500), and whatever a browser or a script sends must be a plain mismatch.
    return offered is not None and hmac.compare_digest(row.csrf_token.encode(), offered.encode(errors="surrogatepass"))


async def create_api_token(session: AsyncSession, principal: Principal, name: str) -> tuple[str, ApiToken]:
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=uuid.uuid4(),
        token_hash=digest(secret),
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,
        name=name,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    return secret, row


async def find_api_token(session: AsyncSession, secret: str) -> ApiToken | None:
    row = (await session.execute(select(ApiToken).where(ApiToken.token_hash == digest(secret)))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


async def list_api_tokens(session: AsyncSession, accountant_id: uuid.UUID) -> list[ApiToken]:
    rows = await session.execute(
        select(ApiToken).where(ApiToken.accountant_id == accountant_id).order_by(col(ApiToken.created_at).desc())
    )
    return list(rows.scalars())


async def revoke_api_token(session: AsyncSession, accountant_id: uuid.UUID, token_id: uuid.UUID) -> bool:
    row = await session.get(ApiToken, token_id)
    if row is None or row.accountant_id != accountant_id or row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    return True


def principal_of(row: BrowserSession | ApiToken) -> Principal:
    return Principal(row.accountant_id, row.firm_id, row.email, row.display_name, row.role)
