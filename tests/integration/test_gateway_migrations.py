"""A gateway database from an earlier version keeps its rows: migrations 0006 and 0008 fill
the figure columns from the figures the rows already hold; 0011 leaves earlier refreshes
counting."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from sqlalchemy import text

from hub_common.db import create_engine, migrate, session_factory
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.readmodel.models import RefreshRow
from hub_gateway.refresh import queries as refresh_queries

FIGURES = {
    "cash": {"accounts": [], "total": "1234.56", "source": "api", "read_at": "2026-11-20T12:00:00Z"},
    "taxes_due": {"amount": "99.90", "accounts": [], "rule": "r", "read_at": "2026-11-20T12:00:00Z"},
    "open_sales_documents": {
        "quotes_count": 1,
        "quotes_amount": "10.00",
        "orders_count": 2,
        "orders_amount": "20.00",
        "invoices_count": 3,
        "invoices_amount": "30.00",
        "read_at": "2026-11-20T12:00:00Z",
    },
    "overdue_sales_invoices": {
        "count": 4,
        "total": "400.00",
        "largest": [],
        "amount_basis": "remaining_amount",
        "read_at": "2026-11-20T12:00:00Z",
    },
}


async def test_old_rows_get_their_figure_columns(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0005")
    engine = create_engine(database_url)
    client, company, firm, assigned = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO gateway_clients (client_id, firm_id, name, client_url, tenant, environment,"
                    " card_json, source, removed, state, added_at, events_sequence) VALUES (:client, :firm,"
                    " 'A', 'u', 't', 'e', :card, 'manual', false, 'ok', '2026-11-20 12:00:00', 1)"
                ),
                {"client": client.hex, "firm": firm.hex, "card": json.dumps({"assigned_accountant_id": str(assigned)})},
            )
            await connection.execute(
                text(
                    "INSERT INTO gateway_companies (client_id, company_id, firm_id, company_name, state,"
                    " cash_total, figures_json, events_sequence, snapshot_sequence) VALUES (:client, :company,"
                    " :firm, 'A1', 'ok', 1234.56, :figures, 1, 1)"
                ),
                {"client": client.hex, "company": company.hex, "firm": firm.hex, "figures": json.dumps(FIGURES)},
            )
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT figure_cash, figure_taxes_due, figure_open_sales_documents_count,"
                        " figure_open_sales_documents_amount, figure_open_sales_orders_count,"
                        " figure_unposted_sales_invoices_amount, figure_overdue_sales_invoices_count,"
                        " figure_purchase_invoices_due_next_week_amount FROM gateway_companies"
                    )
                )
            ).one()
            assigned_to = (
                await connection.execute(text("SELECT assigned_accountant_id FROM gateway_clients"))
            ).scalar()
    finally:
        await engine.dispose()
    assert [None if v is None else Decimal(str(v)) for v in row] == [
        Decimal("1234.56"),
        Decimal("99.90"),
        6,
        Decimal("60.00"),
        2,
        Decimal("30.00"),
        4,
        None,
    ]
    assert uuid.UUID(str(assigned_to)) == assigned


async def test_refreshes_recorded_before_0011_still_count(database_url: str) -> None:
    """0011 adds what a refresh's discovery found and whether it failed: a refresh recorded
    before it reads as not failed and not yet discovered, and its progress still counts."""
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0010")
    engine = create_engine(database_url)
    firm, client, refresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO gateway_refreshes (refresh_id, firm_id, client_id, correlation_id, requested_at)"
                    " VALUES (:refresh, :firm, :client, 'run-1', '2026-11-20 12:00:00')"
                ),
                {"refresh": refresh.hex, "firm": firm.hex, "client": client.hex},
            )
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            progress = await refresh_queries.refresh_progress(session, firm_id=firm, correlation_id="run-1")
            row = await session.get(RefreshRow, refresh)
    finally:
        await engine.dispose()
    assert row is not None and (row.failed, row.companies_found) == (False, None)
    assert progress.model_dump() == {"refreshes": 1, "total": 1, "done": 0, "failed": 0}
