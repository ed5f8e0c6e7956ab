"""Every figure of a snapshot, checked against sums this test computes itself from plain
API reads of the sandbox (no $batch, no fetcher code)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import msal
import pytest

from hub_common.events import ClientConnection, CompanySnapshot
from hub_fetcher import refresh
from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.bc.entities import Company
from hub_fetcher.refresh import ClientReader
from tests.conftest import Sandbox
from tests.support.sandbox_bc import sandbox_business_central

BC_SCOPE = ["https://api.businesscentral.dynamics.com/.default"]


@pytest.fixture(params=[False, True], ids=["api-only", "with-cues"])
async def reader(
    sandbox: Sandbox, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ClientReader, BusinessCentral]]:
    async with sandbox_business_central(sandbox) as bc:
        yield ClientReader(bc, web_client_base=sandbox.web_client, use_cue_services=request.param), bc


class PlainReader:
    """Reads collections one GET at a time, following next links, as a test oracle."""

    def __init__(self, sandbox: Sandbox, tenant: str) -> None:
        self.http = httpx.Client(verify=sandbox.tls(), timeout=30)
        app = msal.ConfidentialClientApplication(
            sandbox.client_id,
            client_credential=sandbox.client_secret,
            authority=f"{sandbox.base_url}/{tenant}",
            http_client=self.http,
            instance_discovery=False,
        )
        token = app.acquire_token_for_client(scopes=BC_SCOPE)["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=7"}
        self.root = f"{sandbox.base_url}/v2.0/{tenant}/Production/api/v2.0"

    def all(self, company: str, entity_set: str) -> list[dict[str, Any]]:
        url: str | None = f"{self.root}/companies({company})/{entity_set}"
        items: list[dict[str, Any]] = []
        while url:
            page = self.http.get(url, headers=self.headers).raise_for_status().json()
            items += page["value"]
            url = page.get("@odata.nextLink")
        return items


def figures_from_cues(reader: ClientReader) -> bool:
    return reader._use_cue_services


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


async def test_every_figure_matches_the_documents(
    sandbox: Sandbox, reader: tuple[ClientReader, BusinessCentral]
) -> None:
    client_reader, bc = reader
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["consented"])
    connection = ClientConnection(tenant=tenant["domain"], environment="Production")
    oracle = PlainReader(sandbox, tenant["id"])
    today = dt.datetime.now(dt.UTC).date()
    discovery = await client_reader.discover(connection)
    assert discovery.companies

    correctives_owed = 0
    for company in discovery.companies:
        before = bc.requests_made
        snapshot: CompanySnapshot = await client_reader.snapshot(
            connection, Company(id=company.id, name=company.name), client_id=uuid.uuid4(), refresh_id=uuid.uuid4()
        )
        cues = 2 if figures_from_cues(client_reader) else 0
        assert bc.requests_made - before == 1 + cues, "one $batch per company, plus the two cue services"
        figures = snapshot.figures
        cid = str(company.id)
        accounts = oracle.all(cid, "accounts")
        sales = oracle.all(cid, "salesInvoices")
        purchases = oracle.all(cid, "purchaseInvoices")

        cash = [
            a
            for a in accounts
            if a["category"] == "Assets" and a["accountType"] == "Posting" and a["subCategory"] == "Cash"
        ]
        assert figures.cash is not None
        assert figures.cash.total == sum((_money(a["netChange"]) for a in cash), Decimal(0))
        assert [b.number for b in figures.cash.accounts] == sorted(a["number"] for a in cash)

        # A corrective invoice stays Corrective paid or not: owed while something remains.
        open_sales = [
            s
            for s in sales
            if s["status"] == "Open" or (s["status"] == "Corrective" and _money(s["remainingAmount"]) != 0)
        ]
        correctives_owed += len([s for s in open_sales if s["status"] == "Corrective"])
        late_sales = [s for s in open_sales if _date(s["dueDate"]) < today]
        assert figures.overdue_sales_invoices is not None
        assert figures.overdue_sales_invoices.count == len(late_sales)
        assert figures.overdue_sales_invoices.total == sum(
            (_money(s["remainingAmount"]) for s in late_sales), Decimal(0)
        )
        largest = sorted((_money(s["remainingAmount"]) for s in late_sales), reverse=True)[:10]
        assert [line.amount for line in figures.overdue_sales_invoices.largest] == largest

        open_purchases = [p for p in purchases if p["status"] == "Open"]
        late_purchases = [p for p in open_purchases if _date(p["dueDate"]) < today]
        assert figures.overdue_purchase_invoices is not None
        assert figures.overdue_purchase_invoices.count == len(late_purchases)
        assert figures.overdue_purchase_invoices.total == sum(
            (_money(p["totalAmountIncludingTax"]) for p in late_purchases), Decimal(0)
        )
        next_week = [
            p
            for p in open_purchases
            if today + dt.timedelta(days=1) <= _date(p["dueDate"]) <= today + dt.timedelta(days=7)
        ]
        assert figures.purchase_invoices_due_next_week is not None
        assert figures.purchase_invoices_due_next_week.count == len(next_week)

        orders = oracle.all(cid, "salesOrders")
        quotes = oracle.all(cid, "salesQuotes")
        drafts = [s for s in sales if s["status"] in ("Draft", "In_x0020_Review")]
        documents = figures.open_sales_documents
        assert documents is not None
        assert (documents.quotes_count, documents.orders_count, documents.invoices_count) == (
            len(quotes),
            len(orders),
            len(drafts),
        )
        assert documents.orders_amount == sum((_money(o["totalAmountIncludingTax"]) for o in orders), Decimal(0))

        def this_month(documents: list[dict[str, Any]]) -> Decimal:
            posted = ("Open", "Paid", "Canceled", "Corrective")
            return sum(
                (
                    _money(d["totalAmountExcludingTax"])
                    for d in documents
                    if d["status"] in posted and today.replace(day=1) <= _date(d["postingDate"]) <= today
                ),
                Decimal(0),
            )

        assert figures.sales_this_month is not None
        assert figures.sales_this_month.amount == this_month(sales) - this_month(oracle.all(cid, "salesCreditMemos"))

        forecast = figures.cash_flow_forecast
        assert forecast is not None
        assert len(forecast.weeks) == 13
        horizon = today + dt.timedelta(days=7 * 13)
        receipts = sum((_money(s["remainingAmount"]) for s in open_sales if _date(s["dueDate"]) < horizon), Decimal(0))
        payments = sum(
            (_money(p["totalAmountIncludingTax"]) for p in open_purchases if _date(p["dueDate"]) < horizon), Decimal(0)
        )
        assert forecast.weeks[-1].closing_balance == figures.cash.total + receipts - payments
        assert forecast.low_point == min([forecast.opening_cash, *(w.closing_balance for w in forecast.weeks)])

        assert figures.taxes_due is not None
        assert figures.taxes_due.amount == Decimal(0) - sum((b.balance for b in figures.taxes_due.accounts), Decimal(0))
        assert figures.taxes_due.accounts, "every seeded company has tax payable accounts"
        assert snapshot.currency_code
        line = figures.overdue_sales_invoices.largest[0] if figures.overdue_sales_invoices.largest else None
        if line is not None:
            assert "page=132" in line.link
            assert line.link.startswith(sandbox.web_client)
    assert correctives_owed, "the sandbox's companies hold an unpaid corrective invoice"


async def test_a_credit_memo_posted_this_month_lowers_sales_this_month(sandbox: Sandbox) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    connection = ClientConnection(tenant=tenant["domain"], environment="Production")
    company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
    customer = PlainReader(sandbox, tenant["id"]).all(company["id"], "customers")[0]["number"]

    async def sales_this_month() -> Decimal:
        async with _reader(sandbox, False) as (client_reader, _bc):
            snapshot = await _snapshot_of(client_reader, connection, company)
        assert snapshot.figures.sales_this_month is not None
        return snapshot.figures.sales_this_month.amount

    before = await sales_this_month()
    try:
        posted = admin.post(
            f"/companies/{company['id']}/sales-credit-memos",
            json={"customer_number": customer, "amount_including_tax": "1234.56"},
        )
        assert posted.status_code == 201, posted.text
        number = posted.json()["document"]["number"]
        memo = PlainReader(sandbox, tenant["id"]).all(company["id"], f"salesCreditMemos?$filter=number eq '{number}'")
        after = await sales_this_month()
    finally:
        admin.delete("/book-changes").raise_for_status()
    assert after == before - _money(memo[0]["totalAmountExcludingTax"])


@pytest.mark.parametrize("domain", ["cronus-sample.onmicrosoft.com", "nordlysgruppen.onmicrosoft.com"])
async def test_cue_and_api_paths_give_the_same_figures(sandbox: Sandbox, domain: str) -> None:
    """Both paths on the same data, for every company (names with "/" too): every figure
    equal, only the source differs."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["domain"] == domain)
    original_version = int(str(tenant["bc_version"]).split(".")[0])
    admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": 29}).raise_for_status()
    try:
        connection = ClientConnection(tenant=tenant["domain"], environment="Production")
        for company in next(e for e in tenant["environments"] if e["name"] == "Production")["companies"]:
            await _assert_paths_agree(sandbox, connection, company)
    finally:
        admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": original_version}).raise_for_status()


async def _assert_paths_agree(sandbox: Sandbox, connection: ClientConnection, company: dict[str, Any]) -> None:
    snapshots = {}
    for use_cues in (False, True):
        async with _reader(sandbox, use_cues) as (client_reader, _bc):
            snapshots[use_cues] = await _snapshot_of(client_reader, connection, company)
    api, cues = (snapshots[flag].figures.model_dump(mode="json") for flag in (False, True))
    assert api["cash"].pop("source") == "api"
    assert cues["cash"].pop("source") == "cues"
    assert api["overdue_purchase_invoices"].pop("amount_basis") == "total_including_tax"
    assert cues["overdue_purchase_invoices"].pop("amount_basis") == "remaining_amount"
    for figures in (api, cues):
        for figure in figures.values():
            figure.pop("read_at")
    assert api == cues


async def test_without_cue_services_bc_30_falls_back_to_the_api(sandbox: Sandbox) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": 30}).raise_for_status()
    try:
        connection = ClientConnection(tenant=tenant["domain"], environment="Production")
        company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
        async with _reader(sandbox, True) as (client_reader, bc):
            for attempt in range(2):
                before = bc.requests_made
                snapshot = await _snapshot_of(client_reader, connection, company)
                assert snapshot.figures.cash is not None
                assert snapshot.figures.cash.source == "api"
                # The first try learns the cues are gone; later ones do not ask again.
                assert bc.requests_made - before == (3 if attempt == 0 else 1)
    finally:
        admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": 29}).raise_for_status()


async def test_cue_services_that_refuse_their_decimal_fields_fall_back_to_the_api(sandbox: Sandbox) -> None:
    """A BC whose cue pages lack the *Decimal fields answers 400 to the $select naming them:
    the cues are a fast path only, so the figures come from API v2.0 (the refresh failed
    before), and the environment is not asked again for a while."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": 29}).raise_for_status()
    admin.put(f"/tenants/{tenant['id']}/faults", json={"kind": "cues_without_decimals"}).raise_for_status()
    try:
        connection = ClientConnection(tenant=tenant["domain"], environment="Production")
        company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
        async with _reader(sandbox, True) as (client_reader, bc):
            for attempt in range(2):
                before = bc.requests_made
                snapshot = await _snapshot_of(client_reader, connection, company)
                assert snapshot.figures.cash is not None
                assert snapshot.figures.cash.source == "api"
                assert bc.requests_made - before == (3 if attempt == 0 else 1)
    finally:
        admin.delete(f"/tenants/{tenant['id']}/faults").raise_for_status()


async def test_cues_are_read_where_the_page_must_first_make_its_record(sandbox: Sandbox) -> None:
    """A company nobody opened a role centre of has no cue record yet; the cue page inserts
    it as it opens, which BC's read-only replica refuses: the cues are read without the
    read-only intent, so such a company still gets BC's own cash and overdue totals."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
    admin.put(
        f"/tenants/{tenant['id']}/faults", json={"kind": "cue_record_missing", "company_id": company["id"]}
    ).raise_for_status()
    try:
        connection = ClientConnection(tenant=tenant["domain"], environment="Production")
        async with _reader(sandbox, True) as (client_reader, _):
            snapshot = await _snapshot_of(client_reader, connection, company)
        assert snapshot.figures.cash is not None
        assert snapshot.figures.cash.source == "cues"
    finally:
        admin.delete(f"/tenants/{tenant['id']}/faults").raise_for_status()


async def test_a_partner_hosted_apps_links_open_its_own_web_client(sandbox: Sandbox) -> None:
    """An Embed app's environments are opened at its own host, not businesscentral.dynamics.com:
    the company's link and its invoices' links go there (the API is read as for any client)."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
    connection = ClientConnection(
        tenant=tenant["domain"], environment="Production", web_client_host="contosofamily.bc.dynamics.com"
    )
    async with _reader(sandbox, False) as (client_reader, _):
        snapshot = await _snapshot_of(client_reader, connection, company)
    home = f"https://contosofamily.bc.dynamics.com/{tenant['domain']}/Production?company="
    assert snapshot.web_client_link is not None and snapshot.web_client_link.startswith(home)
    overdue = snapshot.figures.overdue_sales_invoices
    assert overdue is not None and overdue.largest, "the sample company has overdue sales invoices"
    assert all(invoice.link.startswith(home) for invoice in overdue.largest)


async def _snapshot_of(
    client_reader: ClientReader, connection: ClientConnection, company: dict[str, Any]
) -> CompanySnapshot:
    """One company of the sandbox's admin listing, read as a refresh of its client reads it."""
    return await client_reader.snapshot(
        connection,
        Company(id=uuid.UUID(company["id"]), name=company["name"]),
        client_id=uuid.uuid4(),
        refresh_id=uuid.uuid4(),
    )


@asynccontextmanager
async def _reader(sandbox: Sandbox, use_cues: bool) -> AsyncIterator[tuple[ClientReader, BusinessCentral]]:
    async with sandbox_business_central(sandbox) as bc:
        yield ClientReader(bc, web_client_base=sandbox.web_client, use_cue_services=use_cues), bc


# ---------------------------------------------------------------- exchange rates


def _lcy_per_unit(row: dict[str, Any]) -> Decimal:
    return _money(row["relationalExchangeRateAmount"]) / _money(row["exchangeRateAmount"])


async def test_a_snapshot_carries_the_rates_in_effect_today(sandbox: Sandbox) -> None:
    """Against the sandbox's own rows, read plainly: the latest rate on or before today per
    currency (tomorrow's ignored), as local currency per unit, DKK chained through EUR."""
    tenant = "cronus-sample.onmicrosoft.com"
    oracle = PlainReader(sandbox, tenant)
    connection = ClientConnection(tenant=tenant, environment="Production")
    today = dt.datetime.now(dt.UTC).date()
    async with _reader(sandbox, False) as (client_reader, bc):
        discovery = await client_reader.discover(connection)
        currencies: dict[str, set[str]] = {}
        for company in discovery.companies:
            before = bc.requests_made
            snapshot = await client_reader.snapshot(
                connection, Company(id=company.id, name=company.name), client_id=uuid.uuid4(), refresh_id=uuid.uuid4()
            )
            assert bc.requests_made - before == 1, "the rates come in the company's one $batch"
            rates = snapshot.exchange_rates
            assert rates is not None and rates.unavailable is None and rates.as_of == today
            rows = oracle.all(str(company.id), "currencyExchangeRates")
            assert any(_date(row["startingDate"]) > today for row in rows), "the sandbox enters tomorrow's rates"
            in_effect: dict[str, dict[str, Any]] = {}
            for row in sorted(rows, key=lambda row: row["startingDate"]):
                if _date(row["startingDate"]) <= today:
                    in_effect[row["currencyCode"]] = row
            by_code = {rate.currency_code: rate for rate in rates.rates}
            assert set(by_code) == set(in_effect) and snapshot.currency_code not in by_code
            currencies[snapshot.currency_code] = set(by_code)
            for code, row in in_effect.items():
                expected = _lcy_per_unit(row)
                if row["relationalCurrencyCode"]:
                    expected *= _lcy_per_unit(in_effect[row["relationalCurrencyCode"]])
                rate = by_code[code]
                assert rate.starting_date == _date(row["startingDate"])
                assert rate.lcy_per_unit is not None
                assert abs(rate.lcy_per_unit - expected) < Decimal("1e-12"), (code, rate, row)
    # The sample client keeps books in two currencies; its US company has no kroner rate.
    assert {"GBP", "USD"} <= set(currencies)
    assert "DKK" in currencies["GBP"] and "DKK" not in currencies["USD"]


@pytest.mark.parametrize(
    ("fault_kind", "status"),
    [
        ("entity_not_published", 404),
        # BC failing inside the optional read: the rest of the figures stand (the rates wait
        # for the next refresh) rather than the whole company being tried again and again.
        ("server_error", 500),
    ],
)
async def test_a_tenant_without_the_rates_entity_still_gets_every_figure(
    sandbox: Sandbox, fault_kind: str, status: int
) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    fault = {"kind": fault_kind, "entity_set": "currencyExchangeRates"}
    admin.put(f"/tenants/{tenant['id']}/faults", json=fault).raise_for_status()
    try:
        connection = ClientConnection(tenant=tenant["domain"], environment="Production")
        company = next(e for e in tenant["environments"] if e["name"] == "Production")["companies"][0]
        async with _reader(sandbox, False) as (client_reader, _):
            snapshot = await _snapshot_of(client_reader, connection, company)
        assert snapshot.figures.cash is not None and snapshot.figures.overdue_sales_invoices is not None
        rates = snapshot.exchange_rates
        assert rates is not None and rates.rates == []
        assert rates.unavailable is not None and rates.unavailable.startswith(f"currencyExchangeRates (HTTP {status})")
    finally:
        admin.delete(f"/tenants/{tenant['id']}/faults").raise_for_status()


async def test_the_cues_grace_counts_from_bc_not_from_the_tenants_queue(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Companies read at once: their $batches (slow here) hold the tenant's five BC slots
    while the cue requests wait for one. The grace counted from each $batch's answer gave up
    on cues BC then answered at once, so one refresh mixed BC's cue totals with the API's
    and the environment went without cues for ten minutes."""
    monkeypatch.setattr(refresh, "CUES_GRACE_SECONDS", 1.0)
    with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10) as admin:
        tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
        was = int(tenant["bc_version"].split(".")[0])
        admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": 29}).raise_for_status()
        slow_batches = {"kind": "latency", "latency_ms": 1500, "entity_set": "$batch"}
        admin.put(f"/tenants/{tenant['id']}/faults", json=slow_batches).raise_for_status()
        try:
            async with sandbox_business_central(sandbox) as bc:
                reader = ClientReader(bc, web_client_base=sandbox.web_client, use_cue_services=True)
                connection = ClientConnection(tenant=tenant["domain"], environment="Production")
                [first, *_] = (await reader.discover(connection)).companies
                company = Company(id=first.id, name=first.name)
                snapshots = await asyncio.gather(
                    *(
                        reader.snapshot(connection, company, client_id=uuid.uuid4(), refresh_id=uuid.uuid4())
                        for _ in range(10)
                    )
                )
        finally:
            admin.delete("/faults").raise_for_status()
            admin.put(f"/tenants/{tenant['id']}/bc-version", json={"major": was}).raise_for_status()
    assert [s.figures.cash.source for s in snapshots if s.figures.cash] == ["cues"] * 10
    assert not reader._cues_skipped_until
