"""Dashboard benchmark: how long do the dashboard's queries take for a large firm?

    python -m bench.dashboard --clients 500 --companies-per-client 6 [--database-url URL]

It builds a gateway read model through the real projection (``apply_batch``, the same code
the live gateway runs) for one large firm and a second firm of the same size (every query
must fence the other off), then times the queries a page makes: the first page in the
default order, sorted by a figure, searched, filtered by a threshold and by errors, the
last page, the state counts, and the rows of a few clients (what one live notice reads).
It prints a table of the median and 95th percentile per query and writes
``bench/results/dashboard-<backend>-<params>.json``. Timings are of the query functions on
one connection, without HTTP; see bench/README.md for the recorded results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from nats.aio.msg import Msg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.consumers import Delivery
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import (
    Actor,
    CashFigure,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientSource,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    DiscoveredCompany,
    EventData,
    ExchangeRate,
    ExchangeRates,
    Failure,
    FailureKind,
    OverdueInvoices,
    RefreshFailed,
    new_envelope,
)
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.queries import Comparison, DashboardQuery, Threshold
from hub_gateway.readmodel.projection import apply_batch

RESULTS = Path(__file__).parent / "results"
ACTOR = Actor.service("bench")
NOW = datetime.now(UTC)
BATCH = 500


def _firm_history(firm: uuid.UUID, clients: int, companies: int) -> list[tuple[EventData, str]]:
    """Events of one firm: clients, their companies, one snapshot each; every 20th fails."""
    history: list[tuple[EventData, str]] = []
    for number in range(clients):
        client_id, refresh = uuid.uuid4(), uuid.uuid4()
        tenant = f"client-{number}.example"
        history.append(
            (
                ClientAdded(
                    client_id=client_id,
                    card=ClientCard(
                        name=f"Client {number:04d}", client_url=f"https://businesscentral.dynamics.com/{tenant}"
                    ),
                    connection=ClientConnection(tenant=tenant, environment="Production"),
                    source=ClientSource.MANUAL,
                ),
                EVENTS_STREAM,
            )
        )
        found = [DiscoveredCompany(company_id=uuid.uuid4(), name=f"Company {number}-{c}") for c in range(companies)]
        history.append((CompaniesDiscovered(client_id=client_id, refresh_id=refresh, companies=found), EVENTS_STREAM))
        for index, company in enumerate(found):
            if (number * companies + index) % 20 == 0:
                failure = Failure(kind=FailureKind.TIMEOUT, summary="Timed out.", fix="Try again.", occurred_at=NOW)
                history.append(
                    (
                        RefreshFailed(
                            refresh_id=refresh,
                            client_id=client_id,
                            company_id=company.company_id,
                            company_name=company.name,
                            failure=failure,
                        ),
                        EVENTS_STREAM,
                    )
                )
                continue
            overdue = (number + index) % 5
            history.append(
                (
                    CompanySnapshot(
                        client_id=client_id,
                        company_id=company.company_id,
                        company_name=company.name,
                        refresh_id=refresh,
                        currency_code="EUR" if index % 2 else "GBP",
                        # Each company's BC rates; a reporting currency converts with them.
                        exchange_rates=_rates("EUR" if index % 2 else "GBP"),
                        read_at=NOW - timedelta(seconds=index),
                        web_client_link=f"https://businesscentral.dynamics.com/{tenant}/Production?company=x",
                        figures=CompanyFigures(
                            cash=CashFigure(
                                accounts=[],
                                total=Decimal(number * 37 % 100_000) + Decimal(index) / 100,
                                source="api",
                                read_at=NOW,
                            ),
                            overdue_sales_invoices=OverdueInvoices(
                                count=overdue,
                                total=Decimal(overdue * 250),
                                largest=[],
                                amount_basis="remaining_amount",
                                read_at=NOW,
                            ),
                        ),
                    ),
                    SNAPSHOTS_STREAM,
                )
            )
    return history


def _rates(local_currency: str) -> ExchangeRates:
    """Rates as a company of ``local_currency`` keeps them (LCY per unit)."""
    per_unit = {"GBP": {"EUR": "0.8571", "USD": "0.7914"}, "EUR": {"GBP": "1.1667", "USD": "0.9234"}}
    return ExchangeRates(
        as_of=NOW.date(),
        rates=[
            ExchangeRate(currency_code=code, lcy_per_unit=Decimal(rate), starting_date=NOW.date())
            for code, rate in per_unit[local_currency].items()
        ],
    )


async def _load(sessions: async_sessionmaker[AsyncSession], firm: uuid.UUID, clients: int, companies: int) -> None:
    sequences = {EVENTS_STREAM: 0, SNAPSHOTS_STREAM: 0}
    batch: list[Any] = []
    for data, stream in _firm_history(firm, clients, companies):
        sequences[stream] += 1
        delivery = Delivery(
            subject="bench",
            stream=stream,
            stream_sequence=sequences[stream],
            num_delivered=1,
            headers={},
            raw=cast(Msg, None),
        )
        batch.append((new_envelope(data, firm_id=firm, actor=ACTOR), delivery))
        if len(batch) >= BATCH:
            async with transaction(sessions) as session:
                await apply_batch(session, batch, NOW)
            batch = []
    if batch:
        async with transaction(sessions) as session:
            await apply_batch(session, batch, NOW)


# The threshold the filtered queries use.
BELOW = Decimal(5000)


async def _time(run: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    await run()  # warm the caches and the plan
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": statistics.median(samples), "p95_ms": samples[int(len(samples) * 0.95) - 1]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--companies-per-client", type=int, default=6)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--repeat", type=int, default=30)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = arguments.database_url or f"sqlite:///{folder}/bench.db"
        backend = make_url(url).get_backend_name()
        await asyncio.to_thread(migrate, url, MIGRATIONS, VERSION_TABLE)
        engine = create_engine(url)
        sessions = session_factory(engine)
        firm, other = uuid.uuid4(), uuid.uuid4()
        started = time.perf_counter()
        await _load(sessions, firm, arguments.clients, arguments.companies_per_client)
        await _load(sessions, other, arguments.clients, arguments.companies_per_client)
        load_seconds = time.perf_counter() - started
        rows = arguments.clients * arguments.companies_per_client

        async with sessions() as session:
            some_clients = {
                row.client_id
                for row in (
                    await dashboard_queries.dashboard_page(session, firm_id=firm, query=DashboardQuery(limit=60))
                ).rows
            }

            def page(reporting_currency: str | None = None, **query: Any) -> Callable[[], Awaitable[Any]]:
                return lambda: dashboard_queries.dashboard_page(
                    session, firm_id=firm, query=DashboardQuery(**query), reporting_currency=reporting_currency
                )

            cases: dict[str, Callable[[], Awaitable[Any]]] = {
                "first page (100 rows, by client name)": page(limit=100),
                "sorted by cash, descending": page(limit=100, sort="cash", descending=True),
                "search 'Client 01'": page(limit=100, text="Client 01"),
                "threshold cash < 5,000": page(
                    limit=100, thresholds=[Threshold(column="cash", comparison=Comparison.LT, value=BELOW)]
                ),
                "has errors": page(limit=100, has_errors=True),
                "overdue > 0, sorted by overdue amount": page(
                    limit=100, overdue=True, sort="overdue_sales_invoices_amount", descending=True
                ),
                "last page": page(limit=100, offset=rows - 100),
                "in USD: sorted by converted cash, with totals": page("USD", limit=100, sort="cash", descending=True),
                "in USD: threshold converted cash < 5,000": page(
                    "USD", limit=100, thresholds=[Threshold(column="cash", comparison=Comparison.LT, value=BELOW)]
                ),
                "in USD: last page by converted cash": page("USD", limit=100, offset=rows - 100, sort="cash"),
                "state counts": lambda: dashboard_queries.state_counts(session, firm_id=firm),
                "rows of 10 clients (one live notice)": lambda: dashboard_queries.rows_of_clients(
                    session, firm_id=firm, client_ids=set(list(some_clients)[:10])
                ),
            }
            timings = {name: await _time(run, arguments.repeat) for name, run in cases.items()}
        await engine.dispose()

    print(
        f"\n{backend}: {rows} rows in the firm ({arguments.clients} clients × {arguments.companies_per_client}),"
        f" another firm as large; loaded through the projection in {load_seconds:.1f} s\n"
    )
    print("| query | median ms | p95 ms |\n|---|---:|---:|")
    for name, timing in timings.items():
        print(f"| {name} | {timing['median_ms']:.1f} | {timing['p95_ms']:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "backend": backend,
        "clients": arguments.clients,
        "companies_per_client": arguments.companies_per_client,
        "load_seconds": load_seconds,
        "timings": timings,
        "machine": {"python": platform.python_version(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "at": datetime.now(UTC).isoformat(),
    }
    name = f"dashboard-{backend}-{arguments.clients}x{arguments.companies_per_client}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
