"""Invariant 3 end to end: rebuilding the read model from the real streams, in large
batches merged by time, gives the same tables as applying the same messages one by one in
another order; and the checksums do notice a row that differs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import nats.errors
import psycopg
import pytest
import sqlalchemy
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from hub_cli import rebuild as rebuild_cli
from hub_common.bus import publish_event
from hub_common.consumers import Delivery
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import (
    AccountantJoined,
    Actor,
    AlertRaised,
    AlertRecipient,
    AlertResolved,
    BusinessCentralChanged,
    CashFigure,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    ConnectionTested,
    ConnectionTestRequested,
    DiscoveredCompany,
    Envelope,
    EventData,
    ExchangeRate,
    ExchangeRates,
    Failure,
    FailureKind,
    FirmCreated,
    GrantMethod,
    NotificationState,
    NotificationSubscriptionsChecked,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    Role,
    TenantAccessGranted,
    TenantAccessRevoked,
    decode_event,
    new_envelope,
)
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM, declare_topology
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.readmodel import rebuild as rebuild_module
from hub_gateway.readmodel.models import ClientRow, CompanyRow, FailureRow, ProjectionPosition
from hub_gateway.readmodel.projection import apply_batch
from hub_gateway.readmodel.rebuild import RebuildTargetNotEmpty, projection_positions, rebuild, table_checksums

ACTOR = Actor.service("test-rebuild")
READ_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

Item = tuple[Envelope[EventData], Delivery]


@pytest.fixture
async def own_jetstream(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    """A nats-server of this test's own: a rebuild reads whole streams, and the shared
    server's streams hold every other test's events too."""
    with LocalNatsServer(tmp_path / "nats") as server:
        connection = await nats.connect(server.url)
        js = connection.jetstream()
        await declare_topology(js)
        try:
            yield js
        finally:
            await connection.close()


@pytest.fixture
def live_database_url(database_url: str, postgres_admin_url: str | None) -> Iterator[str]:
    """A second empty database of the same kind, for the model built event by event."""
    if database_url.startswith("sqlite"):
        yield database_url.replace("test.db", "live.db")
        return
    assert postgres_admin_url is not None
    admin = make_url(postgres_admin_url).set(drivername="postgresql")
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    libpq = admin.render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tenant_id(tenant: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, tenant)


def _connection(tenant: str) -> ClientConnection:
    return ClientConnection(tenant=tenant, environment="Production", tenant_id=_tenant_id(tenant))


def _snapshot(
    client: uuid.UUID, company: uuid.UUID, refresh: uuid.UUID, total: str, read_at: datetime
) -> CompanySnapshot:
    return CompanySnapshot(
        client_id=client,
        company_id=company,
        company_name=f"Company {company.hex[:4]}",
        refresh_id=refresh,
        currency_code="EUR",
        read_at=read_at,
        web_client_link="https://businesscentral.dynamics.com/t/Production?company=x",
        figures=CompanyFigures(cash=CashFigure(accounts=[], total=Decimal(total), source="api", read_at=read_at)),
        exchange_rates=_rates(total, read_at),
    )


def _rates(total: str, read_at: datetime) -> ExchangeRates:
    """Rates that differ from one snapshot to the next: a currency comes and goes."""
    usd = ExchangeRate(currency_code="USD", lcy_per_unit=Decimal(total) / 1000, starting_date=read_at.date())
    gbp = ExchangeRate(currency_code="GBP", lcy_per_unit=None, starting_date=read_at.date())
    return ExchangeRates(as_of=read_at.date(), rates=[usd, gbp] if total.endswith(".50") else [usd])


def _failure(kind: FailureKind, occurred_at: datetime) -> Failure:
    return Failure(kind=kind, summary="summary", fix="fix", http_status=403, occurred_at=occurred_at)


def _firm_history(tenant: str) -> list[EventData]:
    """One firm's realistic life: two refreshes, one throttled before it read a company, a
    company losing access, a refresh of one company whose discovery names a company twice
    and which then waits for its client's BC, a client that never connects and is removed,
    and a connection test."""
    client, broken_client = uuid.uuid4(), uuid.uuid4()
    company_a, company_b = uuid.uuid4(), uuid.uuid4()
    first, second, broken_refresh, test = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    only_a = uuid.uuid4()
    companies = [DiscoveredCompany(company_id=company_a, name="A"), DiscoveredCompany(company_id=company_b, name="B")]
    later = READ_AT + timedelta(hours=1)
    owner = uuid.uuid4()
    return [
        FirmCreated(name=f"Firm of {tenant}", owner_accountant_id=owner),
        AccountantJoined(accountant_id=owner, email=f"owner@{tenant}", display_name="Owner", role=Role.OWNER),
        ClientAdded(
            client_id=client,
            card=ClientCard(name="Contoso", client_url=f"https://businesscentral.dynamics.com/{tenant}"),
            connection=_connection(tenant),
            source=ClientSource.MANUAL,
        ),
        TenantAccessGranted(
            tenant_id=_tenant_id(tenant), tenant=tenant, method=GrantMethod.CONNECT, client_id=client, granted_by="a@x"
        ),
        RefreshRequested(refresh_id=first, client_id=client, connection=_connection(tenant)),
        CompaniesDiscovered(client_id=client, refresh_id=first, companies=companies),
        _snapshot(client, company_a, first, "1000.50", READ_AT),
        _snapshot(client, company_b, first, "20.00", READ_AT),
        # Company A subscribed to BC's change notices, B refused for BC's limit; then BC
        # notifies a change of A, which asks for the second refresh.
        NotificationSubscriptionsChecked(
            client_id=client,
            company_id=company_a,
            company_name="A",
            state=NotificationState.SUBSCRIBED,
            entities=["generalLedgerEntries", "salesInvoices"],
            expires_at=READ_AT + timedelta(days=3),
        ),
        NotificationSubscriptionsChecked(
            client_id=client,
            company_id=company_b,
            company_name="B",
            state=NotificationState.POLLING,
            detail="the environment's subscriptions are used up",
        ),
        BusinessCentralChanged(
            client_id=client, company_id=company_a, entities=["salesInvoices"], notices=3, refresh_id=second
        ),
        RefreshRequested(refresh_id=second, client_id=client, connection=_connection(tenant)),
        CompaniesDiscovered(client_id=client, refresh_id=second, companies=companies),
        RefreshDeferred(
            refresh_id=second,
            client_id=client,
            company_id=company_a,
            company_name="A",
            failure=_failure(FailureKind.THROTTLED, later),
            attempt=1,
            next_attempt_at=later,
        ),
        _snapshot(client, company_a, second, "1234.56", later),
        RefreshFailed(
            refresh_id=second,
            client_id=client,
            company_id=company_b,
            company_name="B",
            failure=_failure(FailureKind.NO_COMPANY_ACCESS, later),
        ),
        ClientAdded(
            client_id=broken_client,
            card=ClientCard(name="Fabrikam", client_url=f"https://businesscentral.dynamics.com/x.{tenant}"),
            connection=_connection(f"x.{tenant}"),
            source=ClientSource.MANUAL,
        ),
        RefreshFailed(
            refresh_id=broken_refresh,
            client_id=broken_client,
            failure=_failure(FailureKind.CREDENTIALS_REJECTED, later),
        ),
        TenantAccessGranted(tenant_id=_tenant_id(f"x.{tenant}"), tenant=f"x.{tenant}", method=GrantMethod.INVITATION),
        TenantAccessRevoked(tenant_id=_tenant_id(f"x.{tenant}"), tenant=f"x.{tenant}", reason="consent withdrawn"),
        ClientRemoved(client_id=broken_client),
        RefreshRequested(refresh_id=only_a, client_id=client, connection=_connection(tenant), company_id=company_a),
        CompaniesDiscovered(client_id=client, refresh_id=only_a, companies=[*companies, companies[0]]),
        RefreshDeferred(
            refresh_id=only_a,
            client_id=client,
            failure=_failure(FailureKind.ENVIRONMENT_OFFLINE, later),
            attempt=1,
            next_attempt_at=later + timedelta(minutes=35),
        ),
        ConnectionTestRequested(test_id=test, client_id=client, connection=_connection(tenant)),
        ConnectionTested(test_id=test, client_id=client, ok=True, companies=companies, latency_ms=42),
        # An alert raised and ended, and one still open.
        *_alert(client, company_b, owner, tenant, ended=True),
        *_alert(client, company_a, owner, tenant, ended=False),
    ]


def _alert(client: uuid.UUID, company: uuid.UUID, owner: uuid.UUID, tenant: str, *, ended: bool) -> list[EventData]:
    episode, rule = uuid.uuid4(), uuid.uuid4()
    raised = AlertRaised(
        episode_id=episode,
        rule_id=rule,
        rule_name="Cash running low",
        client_id=client,
        client_name="Contoso",
        company_id=company,
        company_name="B",
        figure="cash",
        comparison="below",
        threshold=Decimal("100"),
        value=Decimal("20.00"),
        currency_code="EUR",
        started_at=READ_AT,
        recipient=AlertRecipient(accountant_id=owner, email=f"owner@{tenant}", display_name="Owner"),
        email=True,
    )
    resolved = AlertResolved(
        episode_id=episode,
        rule_id=rule,
        client_id=client,
        company_id=company,
        value=Decimal("200.00"),
        ended_at=READ_AT + timedelta(hours=2),
        reason="no_longer_holds",
    )
    return [raised, resolved] if ended else [raised]


def _at(data: EventData, moment: datetime) -> EventData:
    """The event as if it happened at ``moment``: readings and failures carry their own time."""
    if isinstance(data, CompanySnapshot):
        return data.model_copy(update={"read_at": moment})
    if isinstance(data, RefreshFailed | RefreshDeferred):
        return data.model_copy(update={"failure": data.failure.model_copy(update={"occurred_at": moment})})
    return data


async def _publish_two_firms(js: JetStreamContext) -> None:
    await _publish_firms(js, ("contoso.example", "fabrikam.example"))


async def _publish_firms(js: JetStreamContext, tenants: tuple[str, ...]) -> None:
    """Each event a second after the one before, so every time agrees with causality."""
    start = datetime.now(UTC)
    for tenant in tenants:
        firm = uuid.uuid4()
        for index, data in enumerate(_firm_history(tenant)):
            moment = start + timedelta(seconds=index)
            envelope = new_envelope(_at(data, moment), firm_id=firm, actor=ACTOR)
            await publish_event(js, envelope.model_copy(update={"occurred_at": moment}))


async def _stream_contents(js: JetStreamContext, stream: str) -> list[Item]:
    """Every message of a stream in stream order, read independently of the rebuild."""
    last = (await js.stream_info(stream)).state.last_seq
    subscription = await js.subscribe("hub.>", stream=stream, ordered_consumer=True)
    items: list[Item] = []
    try:
        while True:
            try:
                msg: Msg = await subscription.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                return items
            sequence = msg.metadata.sequence.stream
            delivery = Delivery(msg.subject, stream, sequence, 1, dict(msg.headers or {}), msg)
            items.append((decode_event(msg.data), delivery))
            if sequence >= last:
                return items
    finally:
        await subscription.unsubscribe()


def _as_published(events: list[Item], snapshots: list[Item]) -> list[Item]:
    """The order a caught-up gateway sees: by the time each event was raised."""
    return sorted([*events, *snapshots], key=lambda item: item[0].occurred_at)


def _snapshots_first(events: list[Item], snapshots: list[Item]) -> list[Item]:
    """What a gateway whose events consumer lags behind its snapshots consumer sees."""
    return [*snapshots, *events]


async def _build_event_by_event(
    js: JetStreamContext, url: str, order: Callable[[list[Item], list[Item]], list[Item]]
) -> None:
    """The live model's way: one message per transaction."""
    await asyncio.to_thread(migrate, url, Path(MIGRATIONS), VERSION_TABLE)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        events, snapshots = await _stream_contents(js, EVENTS_STREAM), await _stream_contents(js, SNAPSHOTS_STREAM)
        for item in order(events, snapshots):
            async with transaction(sessions) as session:
                await apply_batch(session, [item], datetime.now(UTC))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("order", "batch_size"),
    [
        # Small batches, each written while the next is read.
        pytest.param(_as_published, 7, id="as-published-small-batches"),
        pytest.param(_snapshots_first, 20, id="snapshots-first"),
        # Everything in one batch.
        pytest.param(_as_published, 5000, id="as-published-one-batch"),
    ],
)
async def test_rebuild_equals_the_model_built_event_by_event(
    own_jetstream: JetStreamContext,
    database_url: str,
    live_database_url: str,
    order: Callable[[list[Item], list[Item]], list[Item]],
    batch_size: int,
) -> None:
    await _publish_two_firms(own_jetstream)
    await _build_event_by_event(own_jetstream, live_database_url, order)
    progress: list[tuple[int, int]] = []

    result = await rebuild(
        own_jetstream,
        database_url,
        batch_size=batch_size,
        progress=lambda done, total: progress.append((done, total)),
    )

    print(f"rebuilt {result.messages} messages in {result.elapsed_seconds:.3f}s: {result.messages_per_second:.0f}/s")
    assert result.messages >= 2 * len(_firm_history("t.example"))
    assert result.invalid == 0
    assert progress[-1] == (result.messages, result.messages)
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    live, rebuilt = await table_checksums(live_database_url), await table_checksums(database_url)
    assert set(rebuilt) == {
        "gateway_firms",
        "gateway_tenant_access",
        "gateway_accountants",
        "gateway_clients",
        "gateway_companies",
        "gateway_company_rates",
        "gateway_connection_tests",
        "gateway_failures",
        "gateway_positions",
        "gateway_refreshes",
        "gateway_alerts",
    }
    assert rebuilt == live
    # Each firm's company A waits for its client's BC; the throttled wait before it was read ended.
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            states = (await session.execute(select(col(CompanyRow.state)))).scalars().all()
            waits = (
                await session.execute(select(FailureRow).where(col(FailureRow.next_attempt_at).is_not(None)))
            ).scalars()
            assert sorted(states) == ["failed", "failed", "waiting", "waiting"]
            assert sorted(wait.kind for wait in waits) == ["environment_offline", "environment_offline"]
    finally:
        await engine.dispose()

    # The comparison must see a single figure that differs.
    engine = create_engine(live_database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(
                update(CompanyRow)
                .where(col(CompanyRow.figure_cash) == Decimal("1234.56"))
                .values(figure_cash=Decimal("1"))
            )
    finally:
        await engine.dispose()
    altered = await table_checksums(live_database_url)
    assert altered["gateway_companies"] != rebuilt["gateway_companies"]
    assert {table: digest for table, digest in altered.items() if table != "gateway_companies"} == {
        table: digest for table, digest in rebuilt.items() if table != "gateway_companies"
    }


async def test_eight_firms_in_small_batches_rebuild_to_the_same_model(
    own_jetstream: JetStreamContext, database_url: str, live_database_url: str
) -> None:
    """Firms interleaved in the streams, in batches that cut through their histories."""
    await _publish_firms(own_jetstream, tuple(f"firm{index}.example" for index in range(8)))
    await _build_event_by_event(own_jetstream, live_database_url, _as_published)

    result = await rebuild(own_jetstream, database_url, batch_size=13)

    assert result.invalid == 0
    assert await table_checksums(database_url) == await table_checksums(live_database_url)


async def test_an_invalid_message_is_skipped_and_counted_and_positions_stay_on_the_last_valid_one(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    await _publish_two_firms(own_jetstream)
    last_valid = (await own_jetstream.stream_info(EVENTS_STREAM)).state.last_seq
    # What a broken publisher could leave in the log: not an event at all, then an event of
    # a type nobody knows. The live consumers dead-letter both.
    await own_jetstream.publish(f"hub.{uuid.uuid4()}.client.added", b"{not json")
    await own_jetstream.publish(
        f"hub.{uuid.uuid4()}.client.added", b'{"type": "NoSuchEvent", "version": 1, "data": {}}'
    )
    # A valid event on another type's subject (one its publisher may not send as itself).
    removal = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=uuid.uuid4(), actor=Actor.service("t"))
    await own_jetstream.publish(f"hub.{removal.firm_id}.refresh.failed", removal.to_bytes())

    result = await rebuild(own_jetstream, database_url, batch_size=10)

    assert result.invalid == 3
    assert result.messages == last_valid + 3 + (await own_jetstream.stream_info(SNAPSHOTS_STREAM)).state.messages
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            positions = dict(
                (await session.execute(select(col(ProjectionPosition.stream), col(ProjectionPosition.sequence)))).all()
            )
    finally:
        await engine.dispose()
    assert positions[EVENTS_STREAM] == last_valid


async def test_a_rebuild_refuses_a_target_that_holds_a_read_model(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    await _publish_two_firms(own_jetstream)
    await rebuild(own_jetstream, database_url)

    with pytest.raises(RebuildTargetNotEmpty):
        await rebuild(own_jetstream, database_url)


async def test_a_rebuild_leaves_a_database_that_is_not_empty_untouched(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    """The live database named as the target by mistake: the rebuild migrated it to its own
    release (outside the rollout) before it noticed."""
    await _publish_two_firms(own_jetstream)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)")
        with pytest.raises(RebuildTargetNotEmpty, match="someone_elses"):
            await rebuild(own_jetstream, database_url)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: sqlalchemy.inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert tables == ["someone_elses"]


async def test_a_rebuild_refuses_an_audit_log_its_limits_have_cut(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    """With HUB_AUDIT_MAX_AGE_SECONDS set, the oldest events (the firms' and clients' making)
    are removed in time: a model rebuilt from the rest lacked them, and said nothing."""
    await _publish_two_firms(own_jetstream)
    config = (await own_jetstream.stream_info(EVENTS_STREAM)).config
    config.max_msgs = 2  # as an age limit would: the oldest go
    await own_jetstream.update_stream(config)
    with pytest.raises(rebuild_module.AuditLogTruncated, match="HUB_AUDIT_MAX_AGE_SECONDS"):
        await rebuild(own_jetstream, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: sqlalchemy.inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert tables == [], "refused before anything was written"


async def test_a_stream_that_stops_sending_before_its_end_fails_the_rebuild(
    own_jetstream: JetStreamContext, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its delivery lost (a stream leader moving, a NATS restart) while the rest of the stream
    is there: the silence was taken for the stream's end, and the rebuild, cut short, said
    nothing and succeeded."""
    monkeypatch.setattr(rebuild_module, "_SILENCE_SECONDS", 0.2)
    monkeypatch.setattr(rebuild_module, "_STALL_LIMIT_SECONDS", 1.0)
    await _publish_two_firms(own_jetstream)
    received = rebuild_module._StreamReader._received

    async def lost_after_the_third(reader: Any, msg: Msg) -> None:
        if msg.metadata.sequence.stream <= 3:
            await received(reader, msg)

    monkeypatch.setattr(rebuild_module._StreamReader, "_received", lost_after_the_third)
    with pytest.raises(rebuild_module.RebuildIncomplete, match="stopped sending at sequence 3"):
        await rebuild(own_jetstream, database_url)


@contextlib.asynccontextmanager
async def _broker_of_two_firms(tmp_path: Path) -> AsyncIterator[tuple[LocalNatsServer, JetStreamContext]]:
    """A nats-server of the test's own, its topology declared and two firms' history in it,
    for a `hub rebuild` run as an operator runs it."""
    with LocalNatsServer(tmp_path / "nats") as server:
        connection = await nats.connect(server.url)
        try:
            js = connection.jetstream()
            await declare_topology(js)
            await _publish_two_firms(js)
            yield server, js
        finally:
            await connection.close()


@pytest.mark.parametrize("target_from", ["option", "environment"])
async def test_hub_rebuild_as_an_operator_runs_it(tmp_path: Path, target_from: str) -> None:
    """`python -m hub_cli rebuild`, as the benchmark and an operator run it: the target named
    on the command line, or in the environment, where other users of the machine cannot
    read a password in it."""
    async with _broker_of_two_firms(tmp_path) as (server, _):
        environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
        environment |= {"HUB_NATS_URL": server.url, "HUB_MODE": "test", "HUB_LOG_LEVEL": "WARNING"}
        target = f"sqlite:///{tmp_path / 'rebuilt.db'}"
        command = [sys.executable, "-m", "hub_cli", "rebuild"]
        if target_from == "option":
            command += ["--target", target]
        else:
            environment["HUB_REBUILD_TARGET"] = target
        finished = await asyncio.to_thread(
            subprocess.run, command, env=environment, capture_output=True, text=True, timeout=120, check=False
        )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert re.search(r"rebuilt \d+ messages \(0 invalid, skipped\)", finished.stdout), finished.stdout


async def test_a_rebuild_compared_with_a_running_hub_reads_as_far_as_the_live_model(tmp_path: Path) -> None:
    """The hub goes on publishing (refreshes on schedule) while a rebuild runs: compared with
    the live model, the rebuild reads each stream only as far as the live model has applied
    it, and the two are equal (before, the live model always looked different)."""
    live = f"sqlite:///{tmp_path / 'live.db'}"
    async with _broker_of_two_firms(tmp_path) as (server, js):
        await rebuild(js, live)
        await _publish_two_firms(js)  # published since: not applied to the live model yet
        code = await asyncio.to_thread(
            rebuild_cli.run,
            nats_url=server.url,
            target_database_url=f"sqlite:///{tmp_path / 'rebuilt.db'}",
            live_database_url=live,
        )
    assert code == 0
    assert await projection_positions(f"sqlite:///{tmp_path / 'rebuilt.db'}") == await projection_positions(live)


@contextlib.asynccontextmanager
async def _rebuilt_then_changed(js: JetStreamContext, database_url: str) -> AsyncIterator[AsyncSession]:
    """Two firms' history rebuilt into ``database_url``; the block changes rows the way a live
    model may differ, and the checksums must not notice."""
    await _publish_two_firms(js)
    await rebuild(js, database_url)
    before = await table_checksums(database_url)
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            yield session
    finally:
        await engine.dispose()
    assert await table_checksums(database_url) == before


async def test_checksums_compare_figures_as_documents_not_as_spelled(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    """A live row written before the figures' JSON came from pydantic's serializer (spaces
    after separators) still equals its rebuilt row."""
    async with _rebuilt_then_changed(own_jetstream, database_url) as session:
        rows = (await session.execute(select(col(CompanyRow.company_id), col(CompanyRow.figures_json)))).all()
        respelled = [(company, json.dumps(json.loads(text))) for company, text in rows if text is not None]
        assert respelled and all(text != new for (_, text), (_, new) in zip(rows, respelled, strict=False))
        for company, text in respelled:
            await session.execute(
                update(CompanyRow).where(col(CompanyRow.company_id) == company).values(figures_json=text)
            )


async def test_a_reader_that_falls_behind_still_reads_every_message(
    own_jetstream: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server waits while the rebuild is busy; that is not the silence of a stream whose
    last messages were removed, so the reader goes on to the end."""
    monkeypatch.setattr(rebuild_module, "_SILENCE_SECONDS", 0.2)
    monkeypatch.setattr(rebuild_module, "_CHUNKS_AHEAD", 1)
    monkeypatch.setattr(rebuild_module, "_CHUNK_SIZE", 3)
    await _publish_two_firms(own_jetstream)
    extent = await rebuild_module._extent(own_jetstream, EVENTS_STREAM, None)
    read: list[int] = []
    async with rebuild_module._StreamReader(own_jetstream, extent) as reader:
        async for msg in reader.messages():
            read.append(msg.metadata.sequence.stream)
            if len(read) == 1:
                await asyncio.sleep(1.0)  # five silences long, with the queue full
    assert read == list(range(1, extent.last_sequence + 1))


async def test_a_client_row_from_before_its_companies_were_dated_equals_its_rebuilt_row(
    own_jetstream: JetStreamContext, database_url: str
) -> None:
    """Rows kept from before migration 0019 have no time of their last full list of companies
    until their next discovery (a removed client's never): that guard is not compared."""
    async with _rebuilt_then_changed(own_jetstream, database_url) as session:
        dated = select(func.count()).select_from(ClientRow).where(col(ClientRow.companies_listed_at).is_not(None))
        assert (await session.execute(dated)).scalar_one() > 0, "the history lists some client's companies"
        await session.execute(update(ClientRow).values(companies_listed_at=None))
