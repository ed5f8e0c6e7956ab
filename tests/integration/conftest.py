"""Fixtures shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub_common.db import create_engine, migrate, session_factory
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_invitations import app as invitations_app
from hub_registry import app as registry_app


@pytest.fixture
async def fresh_model(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    engines: list[AsyncEngine] = []
    counter = iter(range(100))

    async def make() -> async_sessionmaker[AsyncSession]:
        url = database_url
        if url.startswith("sqlite"):
            url = url.replace("test.db", f"model-{next(counter)}.db")
        await asyncio.to_thread(migrate, url, Path(MIGRATIONS), VERSION_TABLE)
        engine = create_engine(url)
        engines.append(engine)
        return session_factory(engine)

    yield make
    for engine in engines:
        await engine.dispose()


async def _migrated_sessions(
    database_url: str, migrations: Path, version_table: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrate, database_url, migrations, version_table)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def registry_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The registry's database, migrated, on each backend the tests run on."""
    async for sessions in _migrated_sessions(database_url, Path(registry_app.MIGRATIONS), registry_app.VERSION_TABLE):
        yield sessions


@pytest.fixture
async def invitations_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The invitations service's database, migrated, on each backend the tests run on."""
    migrations = Path(invitations_app.MIGRATIONS)
    async for sessions in _migrated_sessions(database_url, migrations, invitations_app.VERSION_TABLE):
        yield sessions
