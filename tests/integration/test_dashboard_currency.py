"""Amounts in a reporting currency, in the database: over a thousand companies in several
local currencies, each with its own BC's rates, sorted, filtered and paged by the converted
amount in SQL (SQLite, and PostgreSQL when configured), with rows that cannot be converted
after the rest and outside every threshold."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.events import (
    CashFigure,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    DiscoveredCompany,
    ExchangeRate,
    ExchangeRates,
    OverdueInvoices,
)
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.currency import NotConverted
from hub_gateway.dashboard.queries import Comparison, DashboardQuery, Threshold
from tests.integration.test_dashboard_model import FIRM, Log, _apply, _client
from tests.integration.test_projection import NOW

COMPANIES = 1050
# Each company's local currency, by its number modulo 6, and its BC's EUR rate (LCY per EUR).
# SEK companies keep no EUR rate; "rates unavailable" ones could not be read; "old" ones were
# read before the hub read rates; the last keeps an unusable (zero) EUR rate. The last does
# not say its local currency (BC's LCY Code is blank) though its BC keeps a EUR rate:
# nothing says which currency its amounts are in, so they are never converted.
PLAN: list[tuple[str, Decimal | None, str]] = [
    ("GBP", Decimal("0.8571"), "rates"),
    ("USD", Decimal("1.083"), "rates"),
    ("DKK", Decimal("7.459"), "rates"),
    ("EUR", None, "rates"),
    ("SEK", None, "rates"),
    ("GBP", None, "unavailable"),
    ("", Decimal("7.459"), "rates"),
]
RATE_DATE = NOW.date()
CENT = Decimal("0.01")
# A GBP company read before the hub read rates, and a USD one whose EUR rate is zero in BC.
OLD_SNAPSHOT, UNUSABLE_RATE = 1043, 1044


def _cash(number: int) -> Decimal:
    # Spread and distinct once converted, some negative.
    return Decimal(number * 7919 % 100_003) / 10 - Decimal(1000)


def _rates(number: int) -> ExchangeRates | None:
    _, eur_rate, kind = PLAN[number % len(PLAN)]
    if kind == "unavailable":
        return ExchangeRates(as_of=RATE_DATE, unavailable="currencyExchangeRates (HTTP 404): Resource not found")
    if number == OLD_SNAPSHOT:
        return None
    rates = [ExchangeRate(currency_code="USD", lcy_per_unit=Decimal("0.79"), starting_date=RATE_DATE)]
    if eur_rate is not None:
        rates.append(ExchangeRate(currency_code="EUR", lcy_per_unit=eur_rate, starting_date=RATE_DATE))
    if number == UNUSABLE_RATE:
        rates = [ExchangeRate(currency_code="EUR", lcy_per_unit=None, starting_date=RATE_DATE)]
    return ExchangeRates(as_of=RATE_DATE, rates=rates)


def _in_euro(number: int) -> Decimal | None:
    """What the hub should show for company ``number``'s cash in EUR, to the cent (None:
    cannot be converted)."""
    currency, eur_rate, _ = PLAN[number % len(PLAN)]
    if not currency:
        return None
    if currency == "EUR":
        return _cash(number)
    rates = _rates(number)
    usable = rates is not None and any(r.currency_code == "EUR" and r.lcy_per_unit for r in rates.rates)
    if eur_rate is None or not usable:
        return None
    return (_cash(number) / eur_rate).quantize(CENT, rounding=ROUND_HALF_UP)


def _name(number: int) -> str:
    return f"C{number:04d}"


async def _firm(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Two clients (a discovery names at most 1,000 companies): the first half of the
    companies is Group A's, so the order by name is the order by number."""
    log = Log()
    refresh = uuid.uuid4()
    clients = [uuid.uuid4(), uuid.uuid4()]
    half = COMPANIES // 2
    ids = [uuid.uuid4() for _ in range(COMPANIES)]
    for index, (client, numbers) in enumerate(zip(clients, (range(half), range(half, COMPANIES)), strict=True)):
        log.add(_client(f"Group {'AB'[index]}", f"group{index}.example", client))
        discovered = [DiscoveredCompany(company_id=ids[n], name=_name(n)) for n in numbers]
        log.add(CompaniesDiscovered(client_id=client, refresh_id=refresh, companies=discovered))
    for number, company_id in enumerate(ids):
        client = clients[0] if number < half else clients[1]
        overdue = OverdueInvoices(count=1, total=Decimal(100), largest=[], amount_basis="remaining_amount", read_at=NOW)
        log.add(
            CompanySnapshot(
                client_id=client,
                company_id=company_id,
                company_name=_name(number),
                refresh_id=refresh,
                currency_code=PLAN[number % len(PLAN)][0],
                read_at=NOW,
                web_client_link="https://businesscentral.dynamics.com/t/Production?company=x",
                figures=CompanyFigures(
                    cash=CashFigure(accounts=[], total=_cash(number), source="api", read_at=NOW),
                    overdue_sales_invoices=overdue,
                ),
                exchange_rates=_rates(number),
            )
        )
    await _apply(sessions, log.items)


async def _page(sessions: async_sessionmaker[AsyncSession], **query: Any) -> dashboard_queries.DashboardPage:
    async with sessions() as session:
        return await dashboard_queries.dashboard_page(
            session, firm_id=FIRM, query=DashboardQuery(**query), reporting_currency="EUR"
        )


async def test_a_converted_sort_and_threshold_over_a_thousand_rows(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    await _firm(sessions)
    numbers = range(COMPANIES)
    # Equal amounts (to the cent) in name order, as the hub breaks ties.
    convertible = sorted((n for n in numbers if _in_euro(n) is not None), key=lambda n: (-(_in_euro(n) or 0), n))
    unconvertible = sorted((n for n in numbers if _in_euro(n) is None), key=_name)
    expected = [_name(n) for n in convertible + unconvertible]

    # Paged by 200, the way the page asks: every row once, in converted order throughout.
    shown: list[str] = []
    for offset in range(0, COMPANIES, 200):
        page = await _page(sessions, sort="cash", descending=True, offset=offset, limit=200)
        assert page.total == COMPANIES and page.reporting_currency == "EUR"
        shown += [row.company_name or "" for row in page.rows]
    assert shown == expected

    # Deep in the list: a page past the thousandth row is still in converted order.
    deep = await _page(sessions, sort="cash", offset=1000, limit=50)
    ascending = [_name(n) for n in sorted(convertible, key=lambda n: (_in_euro(n) or 0, n)) + unconvertible]
    assert [row.company_name for row in deep.rows] == ascending[1000:]

    # A threshold on the converted amount; rows that cannot be converted never match.
    above = await _page(
        sessions,
        sort="cash",
        descending=True,
        thresholds=[Threshold(column="cash", comparison=Comparison.GT, value=Decimal(5000))],
        limit=1000,
    )
    wanted = [_name(n) for n in convertible if (_in_euro(n) or 0) > 5000]
    assert [row.company_name for row in above.rows] == wanted and above.total == len(wanted)
    below = await _page(
        sessions, thresholds=[Threshold(column="cash", comparison=Comparison.LE, value=Decimal(5000))], limit=1000
    )
    assert below.total == len(convertible) - len(wanted)


async def test_rows_say_what_was_converted_and_why_not(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    await _firm(sessions)
    rows = {row.company_name: row for row in (await _page(sessions, limit=1000, text="C000")).rows}

    gbp = rows["C0000"].amounts
    assert gbp is not None
    cash = gbp["cash"]
    assert cash.converted and cash.original_currency == "GBP" and cash.lcy_per_unit == "0.8571"
    assert cash.original == rows["C0000"].values["cash"] and cash.rate_date == RATE_DATE
    assert Decimal(cash.value or "") == (_cash(0) / Decimal("0.8571")).quantize(Decimal("0.01"))

    eur = rows["C0003"].amounts
    assert eur is not None and not eur["cash"].converted and eur["cash"].value == eur["cash"].original

    sek = rows["C0004"].amounts
    assert sek is not None and sek["cash"].not_converted is NotConverted.NO_RATE
    assert sek["cash"].message == "no EUR rate in this client's Business Central"
    assert sek["cash"].value is None and sek["cash"].original == rows["C0004"].values["cash"]

    unavailable = rows["C0005"].amounts
    assert unavailable is not None and unavailable["cash"].not_converted is NotConverted.RATES_UNAVAILABLE
    assert "HTTP 404" in (unavailable["cash"].message or "")

    unknown = rows["C0006"].amounts
    assert unknown is not None and unknown["cash"].not_converted is NotConverted.CURRENCY_UNKNOWN

    every = {row.company_name: row for row in (await _page(sessions, limit=1000, offset=1000)).rows}
    old, unusable = every[_name(OLD_SNAPSHOT)].amounts, every[_name(UNUSABLE_RATE)].amounts
    assert old is not None and old["cash"].not_converted is NotConverted.RATES_NOT_READ
    assert unusable is not None and unusable["cash"].not_converted is NotConverted.UNUSABLE_RATE


async def test_summary_totals_are_in_the_reporting_currency(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    await _firm(sessions)
    page = await _page(sessions, limit=1)
    totals = {total.key: total for total in page.totals}
    overdue = totals["overdue_sales_invoices_amount"]
    convertible = [n for n in range(COMPANIES) if _in_euro(n) is not None]
    # What the rows show (to the cent), added up.
    in_euro = sum(
        ((Decimal(100) / (PLAN[n % len(PLAN)][1] or Decimal(1))).quantize(CENT, ROUND_HALF_UP) for n in convertible),
        Decimal(0),
    )
    assert overdue.currency == "EUR"
    assert overdue.converted == len(convertible) and overdue.not_converted == COMPANIES - len(convertible)
    assert abs(Decimal(overdue.total) - in_euro) <= Decimal("0.05")  # SQLite adds in floating point
    # Without a reporting currency there is no total: amounts of different currencies never add up.
    async with sessions() as session:
        plain = await dashboard_queries.dashboard_page(session, firm_id=FIRM, query=DashboardQuery(limit=1))
    assert plain.totals == [] and plain.rows[0].amounts is None
