"""Issuing and checking sessions and personal API tokens.

Only a SHA-256 of each secret is stored, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.db import SQLITE_BUSY_TIMEOUT_MS, lock_until_commit, transaction
from hub_common.logging import get_logger
from hub_gateway.accounts.models import ApiToken, BrowserSession
from hub_gateway.auth import Principal

logger = get_logger(__name__)

API_TOKEN_PREFIX = "hub_pat_"  # noqa: S105 - a recognisable prefix, not a secret
SESSION_LIFETIME = timedelta(days=7)
# Browsers an accountant stays signed in on at once: beyond it the oldest session ends.
MAX_SESSIONS = 20
# A token's last use is told to the minute: a request within a minute of the recorded use
# writes nothing, so a script calling the API in a loop costs no write per request.
LAST_USE_PRECISION = timedelta(minutes=1)
# How long recording a token's use waits for a lock held by another writer (the read
# model's projection, another replica): the request it rides on must not wait seconds.
LAST_USE_LOCK_WAIT_MS = 200
# An accountant's tokens that still work: each is one more key to the firm's data to keep
# safe, and a script creating them in a loop must not fill the hub's database.
MAX_LIVE_API_TOKENS = 50
# Revoked tokens stay listed (when each was last used tells whether a leaked one was used);
# beyond this many per accountant the oldest revoked go.
KEPT_REVOKED_API_TOKENS = 50


class TooManyApiTokens(Exception):
    """The accountant has MAX_LIVE_API_TOKENS tokens that still work."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def open_session(session: AsyncSession, principal: Principal) -> tuple[str, BrowserSession]:
    """A new browser session; returns the cookie value (never stored) and the row. Sessions
    that expired go (anyone's), and the accountant keeps their MAX_SESSIONS newest at most:
    every sign-in adds a row, and nothing else ends a session nobody signs out of."""
    now = datetime.now(UTC)
    await session.execute(delete(BrowserSession).where(col(BrowserSession.expires_at) <= now))
    newest = (
        select(BrowserSession.token_hash)
        .where(col(BrowserSession.accountant_id) == principal.accountant_id)
        .order_by(col(BrowserSession.created_at).desc())
        .limit(MAX_SESSIONS - 1)
    )
    await session.execute(
        delete(BrowserSession).where(
            col(BrowserSession.accountant_id) == principal.accountant_id,
            col(BrowserSession.token_hash).not_in(newest.scalar_subquery()),
        )
    )
    secret = secrets.token_urlsafe(32)
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


async def close_session(session: AsyncSession, secret: str) -> BrowserSession | None:
    """End the session of this cookie; the session ended, or None if there was none."""
    row = await session.get(BrowserSession, digest(secret))
    if row is not None:
        await session.delete(row)
    return row


def csrf_matches(row: BrowserSession, offered: str | None) -> bool:
    # Compared as UTF-8 bytes: compare_digest refuses a str with non-ASCII characters (a
    # TypeError, so a 500), and whatever a browser or a script sends must be a plain mismatch.
    return offered is not None and hmac.compare_digest(row.csrf_token.encode(), offered.encode(errors="surrogatepass"))


async def create_api_token(
    session: AsyncSession, principal: Principal, name: str, lifetime: timedelta | None = None
) -> tuple[str, ApiToken]:
    """A new token of the accountant's, working for ``lifetime`` (None: until revoked)."""
    # One at a time per accountant, or requests at once each count the others' before its own.
    await lock_until_commit(session, f"api-tokens:{principal.accountant_id}")
    live = await session.execute(
        select(func.count())
        .select_from(ApiToken)
        .where(
            col(ApiToken.accountant_id) == principal.accountant_id,
            col(ApiToken.revoked_at).is_(None),
            or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > datetime.now(UTC)),
        )
    )
    if live.scalar_one() >= MAX_LIVE_API_TOKENS:
        raise TooManyApiTokens
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = ApiToken(
        id=uuid.uuid4(),
        token_hash=digest(secret),
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,
        name=name,
        created_at=now,
        expires_at=now + lifetime if lifetime is not None else None,
    )
    session.add(row)
    return secret, row


async def find_api_token(session: AsyncSession, secret: str) -> ApiToken | None:
    row = (await session.execute(select(ApiToken).where(ApiToken.token_hash == digest(secret)))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        return None
    return row


async def record_api_token_use(sessions: async_sessionmaker[AsyncSession], row: ApiToken, now: datetime) -> None:
    """Records that ``row`` was used ``now`` (its owner sees when a token was last used, and a
    leaked one in use), at most once a LAST_USE_PRECISION per token, whichever replica asks.

    Best effort: the request is answered whether or not the use could be written (a locked
    or failing database is logged), and the write waits LAST_USE_LOCK_WAIT_MS for a lock at
    most; the next request tries again."""
    if row.last_used_at is not None and now - row.last_used_at < LAST_USE_PRECISION:
        return
    stale = or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= now - LAST_USE_PRECISION)
    try:
        async with transaction(sessions) as session:
            statement = update(ApiToken).where(col(ApiToken.id) == row.id, stale).values(last_used_at=now)
            connection = await session.connection()
            if connection.dialect.name == "sqlite":
                # busy_timeout belongs to the pooled connection, so it is put back however the write ends.
                await connection.exec_driver_sql(f"PRAGMA busy_timeout={LAST_USE_LOCK_WAIT_MS}")
                try:
                    await session.execute(statement)
                finally:
                    await connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            else:
                await connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LAST_USE_LOCK_WAIT_MS}ms'")
                await session.execute(statement)
    except SQLAlchemyError as error:
        logger.warning("api_token_use_not_recorded", token_id=str(row.id), error=str(error))


async def list_api_tokens(session: AsyncSession, principal: Principal) -> list[ApiToken]:
    """The caller's tokens in their firm (someone removed from a firm who joined another
    does not show the old firm's token names in the new one)."""
    rows = await session.execute(
        select(ApiToken)
        .where(ApiToken.accountant_id == principal.accountant_id, ApiToken.firm_id == principal.firm_id)
        .order_by(col(ApiToken.created_at).desc())
    )
    return list(rows.scalars())


async def revoke_api_token(session: AsyncSession, principal: Principal, token_id: uuid.UUID) -> bool:
    row = await session.get(ApiToken, token_id)
    if (
        row is None
        or (row.accountant_id, row.firm_id) != (principal.accountant_id, principal.firm_id)
        or row.revoked_at is not None
    ):
        return False
    accountant_id = principal.accountant_id
    row.revoked_at = datetime.now(UTC)
    await session.flush()
    kept = (
        select(ApiToken.id)
        .where(col(ApiToken.accountant_id) == accountant_id, col(ApiToken.revoked_at).is_not(None))
        .order_by(col(ApiToken.revoked_at).desc())
        .limit(KEPT_REVOKED_API_TOKENS)
    )
    await session.execute(
        delete(ApiToken).where(
            col(ApiToken.accountant_id) == accountant_id,
            col(ApiToken.revoked_at).is_not(None),
            col(ApiToken.id).not_in(kept.scalar_subquery()),
        )
    )
    return True


async def end_access(session: AsyncSession, accountant_id: uuid.UUID, now: datetime) -> None:
    """An accountant removed from the firm: every browser session of theirs ends and every
    API token of theirs is revoked (still listed, should they come back)."""
    await session.execute(delete(BrowserSession).where(col(BrowserSession.accountant_id) == accountant_id))
    await session.execute(
        update(ApiToken)
        .where(col(ApiToken.accountant_id) == accountant_id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def principal_of(row: BrowserSession | ApiToken) -> Principal:
    return Principal(row.accountant_id, row.firm_id, row.email, row.display_name, row.role)
