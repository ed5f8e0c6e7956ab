"""Database helpers for SQLite (embedded default) and PostgreSQL (production, CI).

A service is configured with one URL in the plain form (``sqlite:///.hub/registry.db``,
``postgresql://user@host/db``); the async driver for the service and the sync driver for
Alembic are chosen here, so no other module knows which drivers exist.

Each service keeps its own tables (prefixed with the service name) and its own Alembic
version table, so services may share one PostgreSQL database or use one each.
"""

from __future__ import annotations

import fcntl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, DateTime, Table, event, or_, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from hub_common.emails import mailbox_of
from hub_common.text_search import register_sqlite_folding

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


class UnsupportedDatabase(ValueError):
    pass


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise UnsupportedDatabase(f"database {backend!r} is not supported: use sqlite or postgresql")
    return parsed.set(drivername=drivers[backend])


def async_url(url: str) -> URL:
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str) -> URL:
    return _with_driver(url, _SYNC_DRIVERS)


def _ensure_sqlite_folder(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


# How long an SQLite writer waits for another's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers work while a writer commits; busy_timeout waits instead of failing
    # when two processes write at once; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    register_sqlite_folding(dbapi_connection)


def create_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        _ensure_sqlite_folder(target)
        engine = create_async_engine(target)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(target, pool_pre_ping=True, pool_size=10, max_overflow=10)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessions() as session, session.begin():
        yield session


async def lock_until_commit(session: AsyncSession, *names: str) -> None:
    """Take turns with every other transaction locking any of ``names`` (on any replica)
    until this one ends: for a rule over rows that do not exist yet, which no row lock can
    guard. Several names are locked in one order for every transaction (by their lock keys),
    so two transactions locking names in common never wait on each other in a cycle.

    PostgreSQL only, where replicas share the database. SQLite takes no such lock: its
    driver starts a transaction at the first write, so a count read before it may be
    overtaken by a request at the same moment. The embedded hub runs one process per
    database, where that can only overshoot an allowance by the requests made at once;
    a hosted hub runs PostgreSQL (deploy/README).
    """
    if not names or session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(ordered.key) FROM"
            " (SELECT DISTINCT hashtext(name) AS key FROM unnest(CAST(:names AS text[])) AS name ORDER BY 1) AS ordered"
        ),
        {"names": sorted(set(names))},
    )


def same_mailbox(column: Any, email: str) -> ColumnElement[bool]:
    """Rows whose normalized address goes to the same mailbox as ``email``
    (hub_common.emails.mailbox_of): the mailbox itself or any +tag of it."""
    local, domain = mailbox_of(email)

    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    return or_(column == f"{local}@{domain}", column.like(f"{escaped(local)}+%@{escaped(domain)}", escape="\\"))


def upsert(dialect: Dialect, table: Table, *, only_if: Callable[[Any], Any] | None = None) -> Any:
    """INSERT … ON CONFLICT (key) DO UPDATE every other column, in the database's dialect;
    ``only_if(excluded)`` limits the update to rows where it holds."""
    insert: Callable[[Table], Any] = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
    statement = insert(table)
    keys = [column.name for column in table.primary_key.columns]
    others = {column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys}
    condition = only_if(statement.excluded) if only_if is not None else None
    return statement.on_conflict_do_update(index_elements=keys, set_=others, where=condition)


def migrate(url: str, migrations_folder: Path, version_table: str, revision: str = "head") -> None:
    """Bring a service's tables to the newest (or the given) revision (blocking; call off the loop)."""
    target = sync_url(url)
    if target.get_backend_name() == "sqlite":
        _ensure_sqlite_folder(target)
    config = Config()
    config.set_main_option("script_location", str(migrations_folder))
    # Handed over as it is, not as an option: alembic's options are a ConfigParser, which
    # reads a "%" (a password's "@" written "%40") as interpolation and fails, printing the
    # URL, password and all, in the error.
    config.attributes["connection_url"] = target
    config.attributes["version_table"] = version_table
    if target.get_backend_name() == "sqlite" and target.database:
        # Replicas starting together on one SQLite file take turns (PostgreSQL: see below).
        with open(f"{target.database}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            command.upgrade(config, revision)
        return
    command.upgrade(config, revision)


def run_alembic_env(connection_url: URL, version_table: str) -> None:
    """The body of every service's migrations/env.py: online migrations only."""
    from alembic import context
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy import pool

    engine = create_sync_engine(connection_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure_and_run(context, connection, version_table)
    engine.dispose()


def _configure_and_run(context: Any, connection: Connection, version_table: str) -> None:
    context.configure(
        connection=connection,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together take turns: the lock is held until this transaction
            # (every migration, DDL included) commits, and alembic reads the version table
            # only after it, so the next replica finds the tables already at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": version_table})
        context.run_migrations()


async def database_ok(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, whatever the database returns.

    SQLite stores no zone, so without this a value read back is naive and compares or
    serializes differently from the one written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: attach a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
