"""The dashboard's read model: figure columns, filters, sorting and paging in SQL, Check
Errors entries, refresh progress, and the two projections writing the same rows at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.db import transaction
from hub_common.events import (
    AlertRaised,
    AlertRecipient,
    AlertResolved,
    CashFigure,
    CashFlowForecast,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientSource,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    ConnectionTested,
    ConnectionTestRequested,
    DiscoveredCompany,
    Failure,
    FailureKind,
    ForecastWeek,
    OverdueInvoices,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    new_envelope,
)
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.accounts import preferences
from hub_gateway.accounts.models import PreferencesRow, SavedViewRow
from hub_gateway.alerts import queries as alerts_queries
from hub_gateway.auth import Principal
from hub_gateway.check_errors import queries as check_errors_queries
from hub_gateway.company_details import queries as company_details_queries
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.queries import Comparison, DashboardQuery, Threshold
from hub_gateway.readmodel.models import CompanyRow
from hub_gateway.readmodel.projection import apply_batch
from hub_gateway.refresh import queries as refresh_queries
from tests.integration.test_projection import ACTOR, NOW, Batch, _delivery

FIRM, OTHER_FIRM = uuid.uuid4(), uuid.uuid4()


class Log:
    """Builds a firm's events with increasing stream sequences."""

    def __init__(self) -> None:
        self.sequences = {EVENTS_STREAM: 0, SNAPSHOTS_STREAM: 0}
        self.items: Batch = []

    def add(self, data: Any, firm: uuid.UUID = FIRM, correlation_id: str | None = None) -> Any:
        stream = SNAPSHOTS_STREAM if isinstance(data, CompanySnapshot) else EVENTS_STREAM
        self.sequences[stream] += 1
        envelope = new_envelope(data, firm_id=firm, actor=ACTOR, correlation_id=correlation_id)
        self.items.append((envelope, _delivery(stream, self.sequences[stream])))
        return envelope


def _client(name: str, tenant: str, client_id: uuid.UUID) -> ClientAdded:
    return ClientAdded(
        client_id=client_id,
        card=ClientCard(name=name, client_url=f"https://businesscentral.dynamics.com/{tenant}/Production"),
        connection=ClientConnection(tenant=tenant, environment="Production"),
        source=ClientSource.MANUAL,
    )


def _snapshot(
    client_id: uuid.UUID, company_id: uuid.UUID, name: str, cash: str, overdue: int, refresh_id: uuid.UUID
) -> CompanySnapshot:
    overdue_sales = OverdueInvoices(
        count=overdue, total=Decimal(overdue * 100), largest=[], amount_basis="remaining_amount", read_at=NOW
    )
    return CompanySnapshot(
        client_id=client_id,
        company_id=company_id,
        company_name=name,
        refresh_id=refresh_id,
        currency_code="EUR",
        read_at=NOW,
        web_client_link="https://businesscentral.dynamics.com/t/Production?company=x",
        figures=CompanyFigures(
            cash=CashFigure(accounts=[], total=Decimal(cash), source="api", read_at=NOW),
            overdue_sales_invoices=overdue_sales,
        ),
    )


def _failure(kind: FailureKind = FailureKind.CREDENTIALS_REJECTED, status: int = 401) -> Failure:
    return Failure(
        kind=kind,
        summary="Business Central rejected the hub's credentials.",
        fix="Ask the administrator.",
        http_status=status,
        bc_error_code="Authentication_InvalidCredentials",
        message="The server has rejected the client credentials.",
        correlation_id="c-1",
        occurred_at=NOW + timedelta(minutes=1),
    )


async def _apply(sessions: async_sessionmaker[AsyncSession], batch: Batch) -> None:
    async with transaction(sessions) as session:
        await apply_batch(session, batch, NOW)


async def _page(sessions: async_sessionmaker[AsyncSession], **query: Any) -> dashboard_queries.DashboardPage:
    async with sessions() as session:
        return await dashboard_queries.dashboard_page(session, firm_id=FIRM, query=DashboardQuery(**query))


async def _firm_with_rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Three clients: two companies each for Alpha and Beta, none known yet for 50% Gamma."""
    log = Log()
    alpha, beta, gamma = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    refresh = uuid.uuid4()
    companies = {name: uuid.uuid4() for name in ("A1", "A2", "B1", "B2")}
    log.add(_client("Alpha", "alpha.example", alpha))
    log.add(_client("Beta", "beta.example", beta))
    log.add(_client("50% Gamma_", "gamma.example", gamma))
    log.add(_client("Intruder", "intruder.example", uuid.uuid4()), firm=OTHER_FIRM)
    for client, names in ((alpha, ("A1", "A2")), (beta, ("B1", "B2"))):
        discovered = [DiscoveredCompany(company_id=companies[n], name=n) for n in names]
        log.add(CompaniesDiscovered(client_id=client, refresh_id=refresh, companies=discovered))
    log.add(_snapshot(alpha, companies["A1"], "A1", "500.00", 0, refresh))
    log.add(_snapshot(alpha, companies["A2"], "A2", "-20.50", 3, refresh))
    log.add(_snapshot(beta, companies["B1"], "B1", "10000.00", 1, refresh))
    failed = log.add(
        RefreshFailed(
            refresh_id=refresh, client_id=beta, company_id=companies["B2"], company_name="B2", failure=_failure()
        )
    )
    await _apply(sessions, log.items)
    # Delivered again (a redelivery, a replay): nothing doubles.
    await _apply(sessions, log.items)
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "companies": companies, "failed": failed, "log": log}


async def test_rows_filter_sort_and_page_in_the_database(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm_with_rows(sessions)

    everything = await _page(sessions)
    assert everything.total == 5  # four companies and Gamma's placeholder; never the other firm's
    assert [(r.client_name, r.company_name) for r in everything.rows] == [
        ("50% Gamma_", None),
        ("Alpha", "A1"),
        ("Alpha", "A2"),
        ("Beta", "B1"),
        ("Beta", "B2"),
    ]
    assert everything.states.model_dump() == {"queued": 1, "refreshing": 0, "waiting": 0, "ok": 3, "failed": 1}
    a2 = everything.rows[2]
    assert a2.values["cash"] == "-20.50" and a2.values["overdue_sales_invoices_count"] == 3

    by_cash = await _page(sessions, sort="cash", descending=True)
    assert [r.company_name for r in by_cash.rows][:3] == ["B1", "A1", "A2"]  # rows without cash go last
    assert [r.company_name for r in (await _page(sessions, sort="cash")).rows][:3] == ["A2", "A1", "B1"]

    assert [r.company_name for r in (await _page(sessions, overdue=True)).rows] == ["A2", "B1"]
    errors = await _page(sessions, has_errors=True)
    assert [r.company_name for r in errors.rows] == ["B2"]
    assert errors.rows[0].failure is not None and "credentials" in errors.rows[0].failure.summary
    below = await _page(sessions, thresholds=[Threshold(column="cash", comparison=Comparison.LT, value=Decimal(600))])
    assert [r.company_name for r in below.rows] == ["A1", "A2"]
    # The text is matched literally: "%" and "_" are not wildcards.
    assert [r.client_name for r in (await _page(sessions, text="50%")).rows] == ["50% Gamma_"]
    assert (await _page(sessions, text="_")).total == 1
    assert [r.company_name for r in (await _page(sessions, client_id=firm["beta"])).rows] == ["B1", "B2"]

    first, second = await _page(sessions, limit=2), await _page(sessions, limit=2, offset=2)
    assert first.total == second.total == 5
    seen = [r.company_name for r in first.rows + second.rows + (await _page(sessions, limit=2, offset=4)).rows]
    assert seen == [r.company_name for r in everything.rows]


async def _waiting_for_a_retry(sessions: async_sessionmaker[AsyncSession], firm: dict[str, Any], company: str) -> None:
    """Alpha's company ``company`` throttled an hour later: it waits for a retry."""
    later = Log()
    later.sequences = dict(firm["log"].sequences)
    waited_at = NOW + timedelta(hours=1)
    later.add(
        RefreshDeferred(
            refresh_id=uuid.uuid4(),
            client_id=firm["alpha"],
            company_id=firm["companies"][company],
            company_name=company,
            failure=_failure(FailureKind.THROTTLED, 429).model_copy(update={"occurred_at": waited_at}),
            attempt=1,
            next_attempt_at=waited_at + timedelta(minutes=5),
        )
    )
    await _apply(sessions, later.items)


async def test_need_attention_shows_the_rows_its_tile_counts(fresh_model: Callable[[], Any]) -> None:
    """The summary counts failed and waiting rows as needing attention; its filter must show
    those very rows (it showed the failed ones only), while *Has errors* stays failed only."""
    sessions = await fresh_model()
    firm = await _firm_with_rows(sessions)
    await _waiting_for_a_retry(sessions, firm, "A1")

    attention = await _page(sessions, needs_attention=True, sort="state")
    assert [(r.company_name, r.state) for r in attention.rows] == [("B2", "failed"), ("A1", "waiting")]
    assert attention.total == attention.states.failed + attention.states.waiting == 2
    assert [r.company_name for r in (await _page(sessions, has_errors=True)).rows] == ["B2"]


async def test_health_reads_the_forecast_the_snapshot_carries(fresh_model: Callable[[], Any]) -> None:
    """A company whose 13-week forecast goes below zero in its second week is said to run
    out of cash then (the health read a key the figures do not have, so it never did)."""
    sessions = await fresh_model()
    log = Log()
    client, company, refresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    log.add(_client("Runway", "runway.example", client))
    log.add(
        CompaniesDiscovered(
            client_id=client, refresh_id=refresh, companies=[DiscoveredCompany(company_id=company, name="R1")]
        )
    )
    snapshot = _snapshot(client, company, "R1", "100.00", 0, refresh)
    closings = [Decimal("50"), Decimal("-900")] + [Decimal("-900")] * 11
    weeks = [
        ForecastWeek(
            week_start=NOW.date() + timedelta(weeks=i), receipts=Decimal(0), payments=Decimal(0), closing_balance=c
        )
        for i, c in enumerate(closings)
    ]
    forecast = CashFlowForecast(opening_cash=Decimal("100.00"), weeks=weeks, low_point=Decimal("-900"), read_at=NOW)
    log.add(
        snapshot.model_copy(update={"figures": snapshot.figures.model_copy(update={"cash_flow_forecast": forecast})})
    )
    await _apply(sessions, log.items)
    [row] = (await _page(sessions)).rows
    assert "By the forecast, cash runs out in week 2." in row.health.reasons, row.health


async def test_sorting_by_state_puts_what_needs_attention_first(fresh_model: Callable[[], Any]) -> None:
    """By state: failed, then waiting for a retry, then on their way, then fine; descending
    the other way round (it sorted the states' names, so waiting rows came after every OK one)."""
    sessions = await fresh_model()
    firm = await _firm_with_rows(sessions)
    await _waiting_for_a_retry(sessions, firm, "A2")
    ascending = [(r.company_name, r.state) for r in (await _page(sessions, sort="state")).rows]
    assert [state for _, state in ascending] == ["failed", "waiting", "queued", "ok", "ok"], ascending
    descending = [
        state
        for _, state in [(r.company_name, r.state) for r in (await _page(sessions, sort="state", descending=True)).rows]
    ]
    assert descending == ["ok", "ok", "queued", "waiting", "failed"]


async def test_overdue_matches_an_overdue_amount_without_invoices(fresh_model: Callable[[], Any]) -> None:
    """With BC's cue totals an overdue amount may come from ledger entries no open invoice
    stands for (an opening balance posted by journal): the row shows the amount, its count
    is 0, and *Overdue > 0* must still find it (it looked at the counts only)."""
    sessions = await fresh_model()
    log = Log()
    client, refresh = uuid.uuid4(), uuid.uuid4()
    names = ("Sales cue", "Purchase cue", "Nothing overdue", "Credits past due", "Not read")
    companies = {name: uuid.uuid4() for name in names}
    log.add(_client("Delta", "delta.example", client))
    discovered = [DiscoveredCompany(company_id=company_id, name=name) for name, company_id in companies.items()]
    log.add(CompaniesDiscovered(client_id=client, refresh_id=refresh, companies=discovered))

    def overdue(total: str) -> OverdueInvoices:
        return OverdueInvoices(count=0, total=Decimal(total), largest=[], amount_basis="remaining_amount", read_at=NOW)

    for name, sales, purchases in (
        ("Sales cue", "250.00", "0"),
        ("Purchase cue", "0", "80.00"),
        ("Nothing overdue", "0", "0"),
        # Unapplied credit memos past due: the remaining amount is below zero, nothing is owed.
        ("Credits past due", "-120.00", "-5.00"),
    ):
        snapshot = _snapshot(client, companies[name], name, "1.00", 0, refresh)
        figures = snapshot.figures.model_copy(
            update={"overdue_sales_invoices": overdue(sales), "overdue_purchase_invoices": overdue(purchases)}
        )
        log.add(snapshot.model_copy(update={"figures": figures}))
    await _apply(sessions, log.items)

    found = await _page(sessions, overdue=True, sort="company_name")
    # "Not read" has no figures at all: an unknown amount matches nothing.
    assert [r.company_name for r in found.rows] == ["Purchase cue", "Sales cue"]
    assert found.rows[1].values["overdue_sales_invoices_count"] == 0


async def test_companies_sort_by_the_name_the_rows_show(fresh_model: Callable[[], Any]) -> None:
    """Rows show BC's display name, or its company name without one (or with an empty one):
    sorting by company sorted by BC's company name, which may be a code, out of the order seen."""
    sessions = await fresh_model()
    log = Log()
    client = uuid.uuid4()
    log.add(_client("Epsilon", "epsilon.example", client))
    discovered = [
        DiscoveredCompany(company_id=uuid.uuid4(), name="Z001", display_name="alpha Trading"),
        DiscoveredCompany(company_id=uuid.uuid4(), name="Beta Works"),
        DiscoveredCompany(company_id=uuid.uuid4(), name="A002", display_name="Gamma Goods"),
        DiscoveredCompany(company_id=uuid.uuid4(), name="delta Ltd", display_name=""),
    ]
    log.add(CompaniesDiscovered(client_id=client, refresh_id=uuid.uuid4(), companies=discovered))
    await _apply(sessions, log.items)

    shown = ["alpha Trading", "Beta Works", "delta Ltd", "Gamma Goods"]
    assert [r.company_name for r in (await _page(sessions, sort="company_name")).rows] == shown
    descending = await _page(sessions, sort="company_name", descending=True)
    assert [r.company_name for r in descending.rows] == shown[::-1]
    # The default order (by client, then company) follows the shown names too.
    assert [r.company_name for r in (await _page(sessions)).rows] == shown


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Muhl", ["Mühlbach Gruppe"]),
        ("MÜHLBACH", ["Mühlbach Gruppe"]),
        ("lodz", ["Łódź Handel"]),
        ("ŁÓDŹ", ["Łódź Handel"]),
        ("Cafe", ["Café Crème"]),
        ("creme", ["Café Crème"]),
        ("zz", []),
    ],
)
async def test_search_ignores_accents_and_case(fresh_model: Callable[[], Any], text: str, found: list[str]) -> None:
    sessions = await fresh_model()
    log = Log()
    for name in ("Mühlbach Gruppe", "Łódź Handel", "Café Crème", "Plain Ltd"):
        log.add(_client(name, f"{uuid.uuid4().hex[:8]}.example", uuid.uuid4()))
    await _apply(sessions, log.items)

    assert [row.client_name for row in (await _page(sessions, text=text)).rows] == found


async def test_check_errors_keeps_each_failure_once_newest_first(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm_with_rows(sessions)
    log: Log = firm["log"]
    test_id = uuid.uuid4()
    log.add(
        ConnectionTestRequested(
            test_id=test_id, connection=ClientConnection(tenant="typo.example", environment="Production")
        )
    )
    later = _failure(FailureKind.TENANT_NOT_FOUND, 404).model_copy(update={"occurred_at": NOW + timedelta(hours=1)})
    log.add(ConnectionTested(test_id=test_id, ok=False, failure=later))
    log.add(ConnectionTested(test_id=uuid.uuid4(), ok=True, latency_ms=5))
    await _apply(sessions, log.items)
    await _apply(sessions, log.items)

    async with sessions() as session:
        page = await check_errors_queries.failures(session, firm_id=FIRM)
        others = await check_errors_queries.failures(session, firm_id=OTHER_FIRM)
    assert page.total == 2 and others.total == 0
    newest, oldest = page.failures
    assert newest.origin == "connection_test" and (newest.tenant, newest.environment) == ("typo.example", "Production")
    assert oldest.origin == "refresh" and oldest.client_name == "Beta" and oldest.company_name == "B2"
    assert oldest.failure["bc_error_code"] == "Authentication_InvalidCredentials"
    assert oldest.failure["correlation_id"] == "c-1"


async def test_refresh_progress_counts_the_companies_of_one_request(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm_with_rows(sessions)
    log = Log()
    log.sequences = dict(firm["log"].sequences)
    refresh_alpha, refresh_beta = uuid.uuid4(), uuid.uuid4()
    connection = ClientConnection(tenant="t.example", environment="Production")
    for client, refresh in ((firm["alpha"], refresh_alpha), (firm["beta"], refresh_beta)):
        log.add(RefreshRequested(refresh_id=refresh, client_id=client, connection=connection), correlation_id="run-1")
    await _apply(sessions, log.items)

    async def progress() -> refresh_queries.RefreshProgress:
        async with sessions() as session:
            return await refresh_queries.refresh_progress(session, firm_id=FIRM, correlation_id="run-1")

    assert (await progress()).model_dump() == {"refreshes": 2, "total": 4, "done": 0, "failed": 0}
    companies = firm["companies"]
    done = Log()
    done.sequences = dict(log.sequences)
    later = NOW + timedelta(hours=2)
    snapshot = _snapshot(firm["alpha"], companies["A1"], "A1", "1.00", 0, refresh_alpha)
    done.add(snapshot.model_copy(update={"read_at": later}))
    done.add(
        RefreshFailed(
            refresh_id=refresh_beta,
            client_id=firm["beta"],
            failure=_failure().model_copy(update={"occurred_at": later}),
        )
    )
    await _apply(sessions, done.items)
    assert (await progress()).model_dump() == {"refreshes": 2, "total": 4, "done": 3, "failed": 2}
    async with sessions() as session:
        assert (await refresh_queries.refresh_progress(session, firm_id=OTHER_FIRM, correlation_id="run-1")).total == 0


@pytest.mark.postgres
async def test_the_two_projections_never_undo_each_other(fresh_model: Callable[[], Any], database_url: str) -> None:
    """A refresh's snapshot and its discovery applied at the same time by the two streams'
    projections: the discovery waits for the row the snapshot holds, then sees the outcome
    and leaves the company OK, instead of writing "refreshing" over it (on PostgreSQL the
    row lock, on SQLite the database's write lock, which also holds between processes)."""
    sessions = await fresh_model()
    client, company = uuid.uuid4(), uuid.uuid4()
    earlier, refresh = uuid.uuid4(), uuid.uuid4()
    events, snapshots = Log(), Log()
    found = [DiscoveredCompany(company_id=company, name="A")]
    events.add(_client("Alpha", "alpha.example", client))
    events.add(CompaniesDiscovered(client_id=client, refresh_id=earlier, companies=found))
    snapshots.add(_snapshot(client, company, "A", "1.00", 0, earlier))
    await _apply(sessions, events.items + snapshots.items)
    new_snapshot = _snapshot(client, company, "A", "2.00", 0, refresh).model_copy(
        update={"read_at": NOW + timedelta(hours=1)}
    )
    snapshots.items.clear()
    snapshots.add(new_snapshot)
    events.items.clear()
    events.add(CompaniesDiscovered(client_id=client, refresh_id=refresh, companies=found))

    snapshot_applied, release = asyncio.Event(), asyncio.Event()

    async def apply_snapshot() -> None:
        async with transaction(sessions) as session:
            await apply_batch(session, snapshots.items, NOW)
            snapshot_applied.set()
            await release.wait()  # hold the row while the other projection comes for it

    async def apply_discovery() -> None:
        await snapshot_applied.wait()
        await _apply(sessions, events.items)

    snapshot_task = asyncio.create_task(apply_snapshot())
    discovery_task = asyncio.create_task(apply_discovery())
    await snapshot_applied.wait()
    await asyncio.sleep(0.5)
    assert not discovery_task.done(), "the discovery should wait for the snapshot's row lock"
    release.set()
    await asyncio.gather(snapshot_task, discovery_task)
    async with sessions() as session:
        row = await session.get(CompanyRow, (client, company))
    assert row is not None
    assert (row.state, row.outcome_refresh_id, row.figure_cash) == ("ok", refresh, Decimal("2.00"))


async def test_the_largest_amount_an_event_may_carry_is_stored(
    fresh_model: Callable[[], Any], database_url: str
) -> None:
    """A hostile or odd tenant's 28-digit amount is stored, not retried until dead-lettered.
    PostgreSQL keeps it to the cent; SQLite keeps numbers as doubles (about 16 digits), so
    there the column is close and the figures themselves (JSON) stay exact."""
    sessions = await fresh_model()
    client, company = uuid.uuid4(), uuid.uuid4()
    log = Log()
    log.add(_client("Huge", "huge.example", client))
    log.add(_snapshot(client, company, "H", "9" * 26 + ".99", 0, uuid.uuid4()))
    await _apply(sessions, log.items)
    page = await _page(sessions, client_id=client)
    shown = page.rows[0].values["cash"]
    assert isinstance(shown, str)
    if database_url.startswith("postgresql"):
        assert shown == "9" * 26 + ".99"
    else:
        assert abs(Decimal(shown) / Decimal("1" + "0" * 26) - 1) < Decimal("1e-12")
    async with sessions() as session:
        details = await company_details_queries.company_details(
            session, firm_id=FIRM, client_id=client, company_id=company
        )
    assert details is not None and details.figures is not None
    assert details.figures["cash"]["total"] == "9" * 26 + ".99"


async def test_choices_saved_by_an_earlier_version_still_open(fresh_model: Callable[[], Any]) -> None:
    """A column retired since preferences and views were saved: the page still opens, and
    each view stays listed without it (left out, its name stayed taken and it could not be
    chosen to be deleted); only a view stored otherwise unreadable is left out."""
    sessions = await fresh_model()
    principal = Principal(uuid.uuid4(), FIRM, "a@firm.example", "A", "owner")
    definitions = {
        name: preferences.ViewDefinition(name=name, query=DashboardQuery(sort="cash"))
        for name in ("Kept", "Retired column", "Retired sort", "Broken", "Huge zero")
    }
    async with transaction(sessions) as session:
        await preferences.save_preferences(session, principal, preferences.Preferences(columns=["cash"]))
        views = {name: await preferences.save_view(session, principal, d) for name, d in definitions.items()}
    cash_below = {"column": "cash", "comparison": "lt", "value": "10"}
    stored_views = {
        "Retired column": {
            "query": {"thresholds": [{"column": "retired_figure", "comparison": "gt", "value": "0"}, cash_below]},
            "columns": ["retired_figure", "cash"],
        },
        "Retired sort": {"query": {"sort": "retired_figure", "descending": True}, "columns": ["retired_figure"]},
        "Broken": {"query": {"limit": "many"}, "columns": None},
        # Valid until numbers were held to exponents within 28: a zero, read as 0.
        "Huge zero": {"query": {"thresholds": [{"column": "cash", "comparison": "lt", "value": "0E+999999999"}]}},
    }
    async with transaction(sessions) as session:
        stored = await session.get(PreferencesRow, principal.accountant_id)
        assert stored is not None
        stored.columns_json = json.dumps(["retired_figure", "cash"])
        for name, query_json in stored_views.items():
            view = await session.get(SavedViewRow, views[name].view_id)
            assert view is not None
            view.query_json = json.dumps(query_json)
    async with sessions() as session:
        assert (await preferences.preferences_of(session, principal)).columns == ["cash"]
        listed = {v.name: v for v in await preferences.saved_views(session, principal)}
    assert sorted(listed) == ["Huge zero", "Kept", "Retired column", "Retired sort"]
    assert [t.value for t in listed["Huge zero"].query.thresholds] == [0]
    assert listed["Retired column"].columns == ["cash"]
    assert listed["Retired column"].query.thresholds == [Threshold.model_validate(cash_below)]
    assert (listed["Retired sort"].query.sort, listed["Retired sort"].query.descending) == ("client_name", False)
    # Every column of it retired: it shows the accountant's own columns, not a table of none.
    assert listed["Retired sort"].columns is None
    # Listed, so it can be deleted, and its name used again.
    async with transaction(sessions) as session:
        assert await preferences.delete_view(session, principal, listed["Retired column"].view_id)
        await preferences.save_view(session, principal, definitions["Retired column"])


async def test_a_stored_locale_a_later_rule_refuses_loses_only_itself(fresh_model: Callable[[], Any]) -> None:
    """A locale the API took, "en-12" (browsers refuse it): the accountant's columns,
    page size and reporting currency stay, the locale is the browser's."""
    sessions = await fresh_model()
    principal = Principal(uuid.uuid4(), FIRM, "a@firm.example", "A", "owner")
    chosen = preferences.Preferences(columns=["cash", "taxes_due"], page_size=200, reporting_currency="CHF")
    async with transaction(sessions) as session:
        await preferences.save_preferences(session, principal, chosen)
        stored = await session.get(PreferencesRow, principal.accountant_id)
        assert stored is not None
        stored.locale = "en-12"
    async with sessions() as session:
        assert await preferences.preferences_of(session, principal) == chosen


async def test_first_saves_of_the_preferences_at_once_all_land(fresh_model: Callable[[], Any]) -> None:
    """Tabs saving at once, before the accountant has a row: no clash on its key."""
    sessions = await fresh_model()
    page_sizes = [25, 50, 100, 200]
    for _ in range(5):  # a new accountant each round: only the very first save inserts
        principal = Principal(uuid.uuid4(), FIRM, "a@firm.example", "A", "owner")

        async def save(page_size: int, principal: Principal = principal) -> None:
            async with transaction(sessions) as session:
                await preferences.save_preferences(session, principal, preferences.Preferences(page_size=page_size))

        await asyncio.gather(*(save(size) for size in page_sizes))
        async with sessions() as session:
            assert (await preferences.preferences_of(session, principal)).page_size in page_sizes


async def test_views_saved_at_once_stop_at_the_limit(fresh_model: Callable[[], Any], database_url: str) -> None:
    """Saves at once each counted the views before any was stored, and all got in past the
    limit; on PostgreSQL (a hosted hub's replicas share it) they now take turns."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite takes no such lock: the embedded hub is one process (hub_common.db.lock_until_commit)")
    sessions = await fresh_model()
    principal = Principal(uuid.uuid4(), FIRM, "a@firm.example", "A", "owner")
    async with transaction(sessions) as session:
        for number in range(preferences.MAX_VIEWS_PER_ACCOUNTANT - 1):
            await preferences.save_view(
                session, principal, preferences.ViewDefinition(name=f"View {number}", query=DashboardQuery())
            )

    async def save(name: str) -> bool:
        try:
            async with transaction(sessions) as session:
                await preferences.save_view(
                    session, principal, preferences.ViewDefinition(name=name, query=DashboardQuery())
                )
        except preferences.TooManyViews:
            return False
        return True

    saved = await asyncio.gather(*(save(f"At once {number}") for number in range(8)))
    assert saved.count(True) == 1
    async with sessions() as session:
        assert len(await preferences.saved_views(session, principal)) == preferences.MAX_VIEWS_PER_ACCOUNTANT


def _raised(client_id: uuid.UUID, company_id: uuid.UUID | None, rule_name: str, minutes: int) -> AlertRaised:
    return AlertRaised(
        episode_id=uuid.uuid4(),
        rule_id=uuid.uuid4(),
        rule_name=rule_name,
        client_id=client_id,
        client_name="Client",
        company_id=company_id,
        company_name=None if company_id is None else "Company",
        figure="cash",
        comparison="below",
        threshold=Decimal("100"),
        value=Decimal("20.00"),
        currency_code="EUR",
        started_at=NOW - timedelta(hours=2) + timedelta(minutes=minutes),
        recipient=AlertRecipient(accountant_id=uuid.uuid4(), email="owner@example.com", display_name="Owner"),
        email=False,
    )


async def test_alert_markers_count_every_open_alert_of_the_asked_clients(fresh_model: Callable[[], Any]) -> None:
    """The dashboard marked rows from the firm's newest 500 open alerts: beyond them rows
    went unmarked and the count above the table said 500."""
    sessions = await fresh_model()
    log = Log()
    busy, quiet, unasked = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    company = uuid.uuid4()
    for n in range(520):
        log.add(_raised(busy, company, f"Rule {n}", n))
    log.add(_raised(busy, None, "Whole client", 0))
    log.add(_raised(unasked, uuid.uuid4(), "Elsewhere", 0))
    ended = log.add(_raised(quiet, company, "Ended", 0)).data
    log.add(
        AlertResolved(
            episode_id=ended.episode_id,
            rule_id=ended.rule_id,
            client_id=quiet,
            company_id=company,
            value=Decimal("200.00"),
            ended_at=NOW,
            reason="no_longer_holds",
        )
    )
    log.add(_raised(busy, company, "Another firm's", 0), firm=OTHER_FIRM)
    await _apply(sessions, log.items)
    async with sessions() as session:
        marked = await alerts_queries.alert_markers(session, firm_id=FIRM, client_ids=[busy, quiet])
    assert marked.open_total == 522
    by_place = {(marker.client_id, marker.company_id): marker for marker in marked.markers}
    assert set(by_place) == {(busy, company), (busy, None)}
    assert by_place[busy, company].count == 520
    assert by_place[busy, company].rule_names == [f"Rule {n}" for n in range(519, 509, -1)]
    assert by_place[busy, None].count == 1 and by_place[busy, None].rule_names == ["Whole client"]
    async with sessions() as session:
        assert (await alerts_queries.alert_markers(session, firm_id=OTHER_FIRM, client_ids=[busy])).open_total == 1
        nothing_asked = await alerts_queries.alert_markers(session, firm_id=FIRM, client_ids=[])
    assert nothing_asked.open_total == 522 and nothing_asked.markers == []
