"""cmd.fetcher.statements.read answered by real fetcher processes against the sandbox.

Two fetcher processes share the command's queue group on a nats-server of this module's
own (so they never take another test's refreshes). Every statement is checked against
plain API reads of the sandbox and against the G/L accounts and documents it sums.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import msal
import nats
import pytest
from nats.aio.client import Client

from hub_common import commands
from hub_common.commands import CommandRejected, ReadStatements, RejectionReason
from hub_common.events import Actor, ClientConnection, FailureKind
from hub_common.local_nats import LocalNatsServer
from hub_common.statements import CompanyStatements, Statement
from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.statements import StatementsReader
from tests.conftest import Sandbox, declare_as_the_registry
from tests.support.grants import grant_access
from tests.support.processes import ServiceProcess, start_service, stop_all
from tests.support.sandbox_bc import sandbox_business_central

BC_SCOPE = ["https://api.businesscentral.dynamics.com/.default"]
FIRM = uuid.uuid4()
ACTOR = Actor.service("test-statements")


@pytest.fixture(scope="module")
def statements_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalNatsServer(tmp_path_factory.mktemp("statements-nats")) as server:
        declare_as_the_registry(server.url)
        yield server.url


@pytest.fixture(scope="module")
def fetchers(
    statements_nats: str, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServiceProcess]]:
    logs = tmp_path_factory.mktemp("statements-fetchers")
    environment = {"HUB_NATS_URL": statements_nats, **sandbox.settings_environment()}
    processes = [start_service(f"fetcher-{n}", "fetcher", environment, logs) for n in (1, 2)]
    try:
        deadline = time.monotonic() + 60
        while not all("fetcher ready" in p.log() for p in processes):
            for process in processes:
                if process.process.poll() is not None:
                    raise RuntimeError(f"{process.name} exited:\n{process.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("\n".join(p.log()[-2000:] for p in processes))
            time.sleep(0.2)
        yield processes
    finally:
        stop_all(processes)


@pytest.fixture
async def hub_nats(statements_nats: str, fetchers: list[ServiceProcess], sandbox: Sandbox) -> AsyncIterator[Client]:
    connection = await nats.connect(statements_nats)
    # The registry's part: every sandbox tenant granted the test's firm access.
    for tenant in _tenants(sandbox):
        await grant_access(connection.jetstream(), FIRM, uuid.UUID(tenant["id"]), tenant["domain"])
    yield connection
    await connection.close()


def _tenants(sandbox: Sandbox) -> list[dict[str, Any]]:
    tenants: list[dict[str, Any]] = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()[
        "tenants"
    ]
    return tenants


def _consented(sandbox: Sandbox) -> dict[str, Any]:
    return next(t for t in _tenants(sandbox) if t["consented"] and not t["faults"])


def _business_date(sandbox: Sandbox) -> dt.date:
    health = httpx.get(f"{sandbox.base_url}/_sandbox/health", verify=sandbox.tls()).json()
    return dt.date.fromisoformat(health["business_date"])


def _command(tenant: dict[str, Any], company_id: uuid.UUID | str, as_of: dt.date) -> ReadStatements:
    return ReadStatements(
        firm_id=FIRM,
        actor=ACTOR,
        correlation_id=str(uuid.uuid4()),
        connection=ClientConnection(
            tenant=tenant["domain"], environment="Production", tenant_id=uuid.UUID(tenant["id"])
        ),
        company_id=uuid.UUID(str(company_id)),
        as_of=as_of,
    )


async def _read(connection: Client, command: ReadStatements) -> CompanyStatements:
    return await commands.send_command(connection, commands.READ_STATEMENTS, command, CompanyStatements, timeout=30)


class PlainReader:
    """The sandbox's BC API one GET at a time, following next links: the test's oracle."""

    def __init__(self, sandbox: Sandbox, tenant: str, company_id: str) -> None:
        self.http = httpx.Client(verify=sandbox.tls(), timeout=30)
        app = msal.ConfidentialClientApplication(
            sandbox.client_id,
            client_credential=sandbox.client_secret,
            authority=f"{sandbox.base_url}/{tenant}",
            http_client=self.http,
            instance_discovery=False,
        )
        token = app.acquire_token_for_client(scopes=BC_SCOPE)["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.root = f"{sandbox.base_url}/v2.0/{tenant}/Production/api/v2.0/companies({company_id})"

    def all(self, entity_set: str, **params: str) -> list[dict[str, Any]]:
        url: str | None = f"{self.root}/{entity_set}"
        items: list[dict[str, Any]] = []
        query: dict[str, str] | None = params
        while url:
            page = self.http.get(url, headers=self.headers, params=query).raise_for_status().json()
            items += page["value"]
            url, query = page.get("@odata.nextLink"), None
        return items


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _line(statement: Statement, description: str) -> Decimal:
    return next(line.amount for line in statement.lines if line.description == description)


def _same_lines(statement: Statement, rows: list[dict[str, Any]], amount: str) -> None:
    assert [(line.description, line.amount, line.line_type, line.indentation) for line in statement.lines] == [
        (row["display"], _money(row[amount]), row["lineType"], row["indentation"]) for row in rows
    ]


async def test_the_statements_are_the_sandboxs(hub_nats: Client, sandbox: Sandbox) -> None:
    tenant = _consented(sandbox)
    company = tenant["environments"][0]["companies"][0]
    as_of = _business_date(sandbox)
    statements = await _read(hub_nats, _command(tenant, company["id"], as_of))

    oracle = PlainReader(sandbox, tenant["id"], company["id"])
    on_date = {"$filter": f"dateFilter eq {as_of.isoformat()}"}
    assert statements.as_of == as_of
    assert statements.fiscal_year_start == as_of.replace(month=1, day=1)
    assert dt.datetime.now(dt.UTC) - statements.read_at < dt.timedelta(minutes=1)
    assert statements.currency_code == oracle.all("generalLedgerSetup")[0]["localCurrencyCode"]
    _same_lines(statements.balance_sheet, oracle.all("balanceSheets", **on_date), "balance")
    _same_lines(statements.income_statement, oracle.all("incomeStatements", **on_date), "netChange")
    _same_lines(statements.cash_flow_statement, oracle.all("cashFlowStatements", **on_date), "netChange")
    _same_lines(statements.retained_earnings, oracle.all("retainedEarningsStatements", **on_date), "netChange")
    assert statements.income_statement.period_start == statements.fiscal_year_start
    assert statements.balance_sheet.period_start is None

    # What the statements say, against the accounts they sum.
    posting = [a for a in oracle.all("accounts") if a["accountType"] == "Posting"]

    def category_total(*categories: str) -> Decimal:
        return sum((_money(a["netChange"]) for a in posting if a["category"] in categories), Decimal(0))

    assert _line(statements.balance_sheet, "Total Assets") == category_total("Assets")
    net_income = -category_total("Income", "Cost_x0020_of_x0020_Goods_x0020_Sold", "Expense")
    assert _line(statements.income_statement, "Net Income") == net_income
    cash = sum((_money(a["netChange"]) for a in posting if a["subCategory"] == "Cash"), Decimal(0))
    assert _line(statements.cash_flow_statement, "Cash at End of Period") == cash

    balances = {a["number"]: _money(a["netChange"]) for a in posting}
    trial_posting = [line for line in statements.trial_balance.lines if line.is_posting]
    assert {line.number for line in trial_posting} == set(balances)
    for line in trial_posting:
        assert line.balance_debit is not None and line.balance_credit is not None
        assert line.balance_debit - line.balance_credit == balances[line.number], line.number
    headings = [line for line in statements.trial_balance.lines if line.account_type == "Heading"]
    assert headings and all(line.balance_debit is None for line in headings)
    assert sum((line.balance_debit or Decimal(0) for line in trial_posting), Decimal(0)) == sum(
        (line.balance_credit or Decimal(0) for line in trial_posting), Decimal(0)
    )

    # The aged reports: every open document (a corrective one, which stays Corrective paid
    # or not, while something remains), and BC's own "Total" row left out.
    open_sales = [
        s
        for s in oracle.all("salesInvoices")
        if s["status"] == "Open" or (s["status"] == "Corrective" and _money(s["remainingAmount"]) != 0)
    ]
    receivables = statements.aged_receivables
    assert receivables.period_days == 30
    assert all(line.name != "Total" for line in receivables.lines)
    assert sum((line.balance_due for line in receivables.lines), Decimal(0)) == sum(
        (_money(s["remainingAmount"]) for s in open_sales), Decimal(0)
    )
    assert {line.number for line in receivables.lines} == {s["customerNumber"] for s in open_sales}
    for aged in receivables.lines:
        assert aged.current + aged.period1 + aged.period2 + aged.period3 == aged.balance_due
    overdue_31_to_60 = [s for s in open_sales if 31 <= (as_of - dt.date.fromisoformat(s["dueDate"])).days <= 60]
    assert sum((line.period2 for line in receivables.lines), Decimal(0)) == sum(
        (_money(s["remainingAmount"]) for s in overdue_31_to_60), Decimal(0)
    )
    open_purchases = [p for p in oracle.all("purchaseInvoices") if p["status"] == "Open"]
    assert sum((line.balance_due for line in statements.aged_payables.lines), Decimal(0)) == sum(
        (_money(p["totalAmountIncludingTax"]) for p in open_purchases), Decimal(0)
    )


@pytest.fixture
async def bc(sandbox: Sandbox) -> AsyncIterator[BusinessCentral]:
    async with sandbox_business_central(sandbox) as client:
        yield client


async def test_one_round_trip_and_next_links_followed(hub_nats: Client, sandbox: Sandbox, bc: BusinessCentral) -> None:
    tenant = _consented(sandbox)
    company = tenant["environments"][0]["companies"][-1]
    connection = ClientConnection(tenant=tenant["domain"], environment="Production")
    as_of = _business_date(sandbox)
    company_id = uuid.UUID(company["id"])

    whole = await StatementsReader(bc).read(connection, company_id, as_of=as_of)
    assert bc.requests_made == 1, "a calendar fiscal year costs one $batch"

    paged = await StatementsReader(bc, page_size=2).read(connection, company_id, as_of=as_of)
    assert bc.requests_made > 2, "pages of two entities need next links"
    assert paged.model_dump(exclude={"read_at"}) == whole.model_dump(exclude={"read_at"})

    from_a_fetcher = await _read(hub_nats, _command(tenant, company_id, as_of))
    assert from_a_fetcher.model_dump(exclude={"read_at"}) == whole.model_dump(exclude={"read_at"})


async def test_any_fetcher_answers(hub_nats: Client, sandbox: Sandbox, fetchers: list[ServiceProcess]) -> None:
    tenant = _consented(sandbox)
    company = tenant["environments"][0]["companies"][0]
    as_of = _business_date(sandbox)
    before = [p.log().count('"statements read"') for p in fetchers]
    answers = await asyncio.gather(*(_read(hub_nats, _command(tenant, company["id"], as_of)) for _ in range(16)))
    assert len({a.model_dump_json(exclude={"read_at"}) for a in answers}) == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = [p.log().count('"statements read"') for p in fetchers]
        if sum(after) - sum(before) == 16:
            break
        await asyncio.sleep(0.1)
    # Random spreading over two members leaves one idle once in 2^15 runs.
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def test_a_tenant_without_consent_is_a_classified_upstream_failure(hub_nats: Client, sandbox: Sandbox) -> None:
    tenant = next(t for t in _tenants(sandbox) if not t["consented"])
    company = tenant["environments"][0]["companies"][0]
    with pytest.raises(CommandRejected) as raised:
        await _read(hub_nats, _command(tenant, company["id"], _business_date(sandbox)))
    rejection = raised.value.rejection
    assert rejection.reason is RejectionReason.UPSTREAM
    assert rejection.failure is not None
    assert rejection.failure.kind is FailureKind.CONSENT_MISSING
    assert rejection.message == rejection.failure.summary
    assert "Invite External Accountant" in rejection.failure.fix


async def test_an_unknown_company_is_no_company_access(hub_nats: Client, sandbox: Sandbox) -> None:
    tenant = _consented(sandbox)
    with pytest.raises(CommandRejected) as raised:
        await _read(hub_nats, _command(tenant, uuid.uuid4(), _business_date(sandbox)))
    rejection = raised.value.rejection
    assert rejection.reason is RejectionReason.UPSTREAM
    assert rejection.failure is not None
    assert rejection.failure.kind is FailureKind.NO_COMPANY_ACCESS
    assert rejection.failure.http_status == 404


async def test_an_upgrading_environment_is_unavailable_for_now(hub_nats: Client, sandbox: Sandbox) -> None:
    tenant = _consented(sandbox)
    company = tenant["environments"][0]["companies"][0]
    faults = f"{sandbox.base_url}/_sandbox/tenants/{tenant['id']}/faults"
    httpx.put(
        faults, json={"kind": "upgrading", "retry_after_seconds": 7, "count": 1}, verify=sandbox.tls()
    ).raise_for_status()
    try:
        with pytest.raises(CommandRejected) as raised:
            await _read(hub_nats, _command(tenant, company["id"], _business_date(sandbox)))
    finally:
        httpx.delete(faults, verify=sandbox.tls()).raise_for_status()
    rejection = raised.value.rejection
    assert rejection.reason is RejectionReason.UNAVAILABLE
    assert rejection.failure is not None
    assert rejection.failure.kind is FailureKind.ENVIRONMENT_OFFLINE
    assert rejection.failure.http_status == 503


async def test_an_invalid_command_is_refused_with_its_field(hub_nats: Client) -> None:
    answer = await hub_nats.request(commands.READ_STATEMENTS, b'{"firm_id": "not a uuid"}', timeout=10)
    reply = commands.CommandReply[CompanyStatements].model_validate_json(answer.data)
    assert reply.rejection is not None
    assert reply.rejection.reason is RejectionReason.INVALID
    assert reply.rejection.field == "firm_id"
