"""The workbooks through the real processes: gateway → fetcher (statements command) →
sandbox → xlsx, opened with openpyxl and checked against the sandbox and the dashboard."""

from __future__ import annotations

import io
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook

from hub_gateway.reports.capacity import WORKBOOKS_PER_FIRM
from hub_gateway.reports.key_figures import STATE_NAMES
from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant
from tests.e2e.conftest import Hub
from tests.integration.test_statements_command import PlainReader
from tests.support.time_zones import zone_off_utcs_date

pytestmark = pytest.mark.e2e

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OWNER = "rita@reports-accounting.example"
INTRUDER = "ivan@other-reports-accounting.example"


def _rows(api: httpx.Client, client_id: str, hub: Hub, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [
            r for r in api.get("/api/v1/dashboard").raise_for_status().json()["rows"] if r["client_id"] == client_id
        ]
        if rows and all(r["state"] == "ok" for r in rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"the client's rows never became ok: {rows}\n{hub.logs()}")


@pytest.fixture(scope="module")
def firm(hub: Hub, sandbox: Sandbox) -> dict[str, Any]:
    """A firm with one client (a sandbox tenant with its companies) on its dashboard."""
    api = hub.client(OWNER)
    connected = connect_consented_tenant(sandbox, api, name="Reports & Co.")
    return {"tenant": connected.tenant, "client_id": connected.client_id, "rows": _rows(api, connected.client_id, hub)}


def _workbook_url(client_id: str, company_id: str) -> str:
    return f"/api/v1/clients/{client_id}/companies/{company_id}/workbook"


def _open(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    return load_workbook(io.BytesIO(response.content))


def _value(sheet: Any, label: str, column: int = 2) -> Decimal:
    for row in sheet.iter_rows(min_row=6):
        if row[0].value == label or (len(row) > 1 and row[1].value == label):
            return Decimal(str(row[column - 1].value))
    raise AssertionError(f"no line {label!r} on {sheet.title}")


def test_a_company_workbook_holds_the_companys_statements(hub: Hub, sandbox: Sandbox, firm: dict[str, Any]) -> None:
    api = hub.client(OWNER)
    row = firm["rows"][0]
    response = api.get(_workbook_url(firm["client_id"], row["company_id"]), timeout=60)
    workbook = _open(response)
    today = datetime.now(UTC).date().isoformat()
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"{row['company_name']} {today}.xlsx"
    assert response.headers["cache-control"] == "no-store"
    assert workbook.sheetnames == [
        "Balance Sheet",
        "Income Statement",
        "Cash Flow Statement",
        "Retained Earnings",
        "Trial Balance",
        "Aged Receivables",
        "Aged Payables",
    ]
    oracle = PlainReader(sandbox, firm["tenant"]["id"], row["company_id"])
    posting = [a for a in oracle.all("accounts") if a["accountType"] == "Posting"]
    assets = sum((Decimal(str(a["netChange"])) for a in posting if a["category"] == "Assets"), Decimal(0))
    balance_sheet = workbook["Balance Sheet"]
    assert _value(balance_sheet, "Total Assets") == assets
    assert balance_sheet["A1"].value == row["company_name"]
    assert "Reports & Co." in balance_sheet["A3"].value
    assert balance_sheet.oddHeader.left.text == row["company_name"].replace("&", "&&")
    assert balance_sheet.oddHeader.right.text == f"As of {today}"
    assert balance_sheet["B7"].number_format.endswith(f'"{row["currency_code"]}";;@')  # zero blank, as BC prints
    assert balance_sheet["B7"].number_format.startswith("#,##0.00 ")  # the sample keeps cents, as BC wrote them

    # The snapshot's cash (the dashboard) is the cash flow statement's closing cash.
    cash_flow = workbook["Cash Flow Statement"]
    assert _value(cash_flow, "Cash at End of Period") == Decimal(row["values"]["cash"])

    # Owed: Open, or Corrective (kept paid or not) with something remaining.
    open_sales = [
        s
        for s in oracle.all("salesInvoices")
        if s["status"] == "Open" or (s["status"] == "Corrective" and Decimal(str(s["remainingAmount"])) != 0)
    ]
    receivables = workbook["Aged Receivables"]
    assert _value(receivables, "Total", column=7) == sum(
        (Decimal(str(s["remainingAmount"])) for s in open_sales), Decimal(0)
    )
    trial_balance = workbook["Trial Balance"]
    debit = _value(trial_balance, "Total of posting accounts", column=5)
    assert debit == _value(trial_balance, "Total of posting accounts", column=6)
    assert trial_balance.page_setup.orientation == "landscape"
    assert trial_balance.page_setup.fitToWidth == 1


def test_a_statement_date_can_be_chosen_but_not_in_the_future(hub: Hub, firm: dict[str, Any]) -> None:
    api = hub.client(OWNER)
    row = firm["rows"][0]
    url = _workbook_url(firm["client_id"], row["company_id"])
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    dated = api.get(url, params={"as_of": yesterday}, timeout=60)
    workbook = _open(dated)
    assert workbook["Balance Sheet"]["A2"].value == f"Balance Sheet — as of {yesterday}"
    assert yesterday in dated.headers["content-disposition"]
    # BC ages what is open today, whatever the date: the aging sheets say so.
    for title in ("Aged Receivables", "Aged Payables"):
        assert "Business Central ages what is open on" in workbook[title]["A4"].value
        assert workbook["Balance Sheet"]["A4"].value is None
    later = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    assert api.get(url, params={"as_of": later}).status_code == 422
    assert api.get(url, params={"as_of": "not a date"}).status_code == 422


def test_a_company_workbook_is_named_as_the_dashboard_names_the_company(hub: Hub, firm: dict[str, Any]) -> None:
    """BC's display name, where it differs from the company's name (which may be a short
    code), is what the dashboard shows; the workbook's file and title were named otherwise."""
    api = hub.client(OWNER)
    row = firm["rows"][-1]
    shown = "Renamed for display & Co."
    # The sandbox's companies are named as they are displayed: the gateway's read model is
    # given another display name, as a snapshot of such a company would give it.
    database = hub.gateway_environment["HUB_DATABASE_URL"].removeprefix("sqlite:///")

    def display_name(name: str | None) -> None:
        with closing(sqlite3.connect(database, timeout=30)) as connection, connection:
            changed = connection.execute(
                # The sandbox's companies keep their ids in every client that reads them.
                "UPDATE gateway_companies SET display_name = ? WHERE client_id = ? AND company_id = ?",
                (name, uuid.UUID(firm["client_id"]).hex, uuid.UUID(row["company_id"]).hex),
            )
            assert changed.rowcount == 1

    details = f"/api/v1/clients/{firm['client_id']}/companies/{row['company_id']}"
    before = api.get(details).json()["display_name"]
    display_name(shown)
    try:
        rows = api.get("/api/v1/dashboard", params={"client_id": firm["client_id"]}).json()["rows"]
        assert shown in [r["company_name"] for r in rows]
        response = api.get(_workbook_url(firm["client_id"], row["company_id"]), timeout=60)
        workbook = _open(response)
        file_name = unquote(response.headers["content-disposition"].split("filename*=UTF-8''")[1])
        assert file_name.startswith(f"{shown} "), file_name
        assert workbook["Balance Sheet"]["A1"].value == shown
    finally:
        display_name(before)


def test_another_firms_company_is_404(hub: Hub, firm: dict[str, Any]) -> None:
    row = firm["rows"][0]
    intruder = hub.client(INTRUDER)
    assert intruder.get(_workbook_url(firm["client_id"], row["company_id"])).status_code == 404
    owner = hub.client(OWNER)
    assert owner.get(_workbook_url(firm["client_id"], str(uuid.uuid4()))).status_code == 404
    assert owner.get(_workbook_url(str(uuid.uuid4()), row["company_id"])).status_code == 404
    assert httpx.get(f"{hub.url}{_workbook_url(firm['client_id'], row['company_id'])}").status_code == 401
    # The intruder's own key figures hold none of the victim's rows.
    sheet = _open(intruder.get("/api/v1/key-figures/workbook"))["Key figures"]
    assert sheet.max_row == 4


def _fault(sandbox: Sandbox, tenant: dict[str, Any], spec: dict[str, Any]) -> str:
    url = f"{sandbox.base_url}/_sandbox/tenants/{tenant['id']}/faults"
    httpx.put(url, json=spec, verify=sandbox.tls()).raise_for_status()
    return url


def test_a_bc_failure_is_a_clear_json_error(hub: Hub, sandbox: Sandbox, firm: dict[str, Any]) -> None:
    api = hub.client(OWNER)
    row = firm["rows"][0]
    url = _workbook_url(firm["client_id"], row["company_id"])
    faults = _fault(sandbox, firm["tenant"], {"kind": "company_forbidden", "company_id": row["company_id"]})
    try:
        forbidden = api.get(url, timeout=60)
    finally:
        httpx.delete(faults, verify=sandbox.tls()).raise_for_status()
    assert forbidden.status_code == 502, forbidden.text
    detail = forbidden.json()["detail"]
    assert detail["failure"]["kind"] == "no_company_access"
    assert detail["message"] == detail["failure"]["summary"]
    assert detail["failure"]["fix"]
    assert detail["failure"]["http_status"] == 500

    _fault(sandbox, firm["tenant"], {"kind": "upgrading", "retry_after_seconds": 5, "count": 1})
    try:
        upgrading = api.get(url, timeout=60)
    finally:
        httpx.delete(faults, verify=sandbox.tls()).raise_for_status()
    assert upgrading.status_code == 503, upgrading.text
    assert upgrading.headers["retry-after"]
    assert upgrading.json()["detail"]["failure"]["kind"] == "environment_offline"
    # And once BC is back, the workbook comes.
    _open(api.get(url, timeout=60))


def test_a_firm_has_a_few_workbooks_on_their_way_at_once(hub: Hub, sandbox: Sandbox, firm: dict[str, Any]) -> None:
    """A script downloading workbook after workbook would hold every fetcher's statement
    workers and the gateway's memory: past a few on their way, the firm is told to wait."""
    api = hub.client(OWNER)
    url = _workbook_url(firm["client_id"], firm["rows"][0]["company_id"])
    faults = _fault(sandbox, firm["tenant"], {"kind": "latency", "latency_ms": 3000, "entity_set": "$batch"})
    try:
        with ThreadPoolExecutor(WORKBOOKS_PER_FIRM + 1) as pool:
            answers = list(pool.map(lambda _: hub.client(OWNER).get(url, timeout=60), range(WORKBOOKS_PER_FIRM + 1)))
    finally:
        httpx.delete(faults, verify=sandbox.tls()).raise_for_status()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * WORKBOOKS_PER_FIRM + [429], [a.text[:200] for a in answers]
    busy = next(answer for answer in answers if answer.status_code == 429)
    assert busy.headers["retry-after"] == "10"
    assert "workbooks on their way" in busy.json()["detail"]["message"]
    _open(api.get(url, timeout=60))  # places free again once the others are done


def test_the_key_figures_workbook_is_the_dashboard(hub: Hub, firm: dict[str, Any]) -> None:
    api = hub.client(OWNER)
    response = api.get("/api/v1/key-figures/workbook")
    sheet = _open(response)["Key figures"]
    assert "Key figures" in unquote(response.headers["content-disposition"])
    dashboard = api.get("/api/v1/dashboard").json()["rows"]
    headings = [c.value for c in sheet[4]]
    column = {heading: index for index, heading in enumerate(headings)}
    data = [[c.value for c in r] for r in sheet.iter_rows(min_row=5, max_row=4 + len(dashboard))]
    by_name = {(r[column["Client"]], r[column["Company"]]): r for r in data}
    assert set(by_name) == {(d["client_name"], d["company_name"]) for d in dashboard}
    assert len(by_name) == len(dashboard) == len(firm["rows"])
    for row in dashboard:
        values, figures = by_name[(row["client_name"], row["company_name"])], row["values"]
        assert values[column["Currency"]] == row["currency_code"]
        assert values[column["State"]] == STATE_NAMES[row["state"]]  # the state in words
        assert Decimal(str(values[column["Cash"]])) == Decimal(figures["cash"])
        assert values[column["Overdue sales invoices"]] == figures["overdue_sales_invoices_count"]
        assert Decimal(str(values[column["Taxes due"]])) == Decimal(figures["taxes_due"])
        low_point = Decimal(figures["forecast_low_point"])
        assert Decimal(str(values[column["Forecast low point (13 weeks)"]])) == low_point
        open_documents = sum(
            values[column[heading]] for heading in ("Open sales quotes", "Open sales orders", "Unposted sales invoices")
        )
        assert open_documents == figures["open_sales_documents_count"]
    # One total line per currency, below a blank row.
    currencies = sorted({d["currency_code"] for d in dashboard})
    totals = [[c.value for c in r] for r in sheet.iter_rows(min_row=6 + len(dashboard))]
    assert [t[column["Client"]] for t in totals] == [f"Total {c}" for c in currencies]
    for total, currency in zip(totals, currencies, strict=True):
        expected = sum((Decimal(d["values"]["cash"]) for d in dashboard if d["currency_code"] == currency), Decimal(0))
        assert Decimal(str(total[column["Cash"]])).quantize(Decimal("0.01")) == expected
    assert sheet.auto_filter.ref.endswith(str(4 + len(dashboard)))


@pytest.mark.parametrize(
    ("currency", "all_converted"),
    [
        ("DKK", True),  # the client's BC keeps kroner rates
        ("XYZ", False),  # a code no BC has a rate for: every company left out, each saying why
    ],
)
def test_the_key_figures_workbook_adds_up_in_the_reporting_currency(
    hub: Hub, firm: dict[str, Any], currency: str, all_converted: bool
) -> None:
    api = hub.client(OWNER)
    chosen = api.get("/api/v1/preferences").raise_for_status().json()
    assert api.put("/api/v1/preferences", json=chosen | {"reporting_currency": currency}).status_code == 200
    try:
        page = api.get("/api/v1/dashboard").raise_for_status().json()
        sheet = _open(api.get("/api/v1/key-figures/workbook"))["Key figures"]
    finally:
        api.put("/api/v1/preferences", json=chosen).raise_for_status()
    rows = page["rows"]
    headings = [c.value for c in sheet[4]]
    column = {heading: index for index, heading in enumerate(headings)}
    lines = [[c.value for c in r] for r in sheet.iter_rows(min_row=5)]
    total = next(line for line in lines if line[column["Client"]] == f"Total in {currency}")
    with_amounts = [r for r in rows if r["amounts"]]
    converted = [r for r in with_amounts if all(a["value"] is not None for a in r["amounts"].values())]
    assert with_amounts
    assert converted == (with_amounts if all_converted else [])
    assert total[column["Company"]] == f"{len(converted)} of {len(with_amounts)} companies"
    assert total[column["Currency"]] == currency
    cash = sum((Decimal(r["amounts"]["cash"]["value"]) for r in converted if "cash" in r["amounts"]), Decimal(0))
    assert Decimal(str(total[column["Cash"]] or 0)).quantize(Decimal("0.01")) == cash
    # The same rule as the dashboard's own total of the filtered rows.
    overdue = next(t for t in page["totals"] if t["key"] == "overdue_sales_invoices_amount")
    shown = Decimal(str(total[column["Overdue sales invoices (amount)"]] or 0)).quantize(Decimal("0.01"))
    assert shown == Decimal(overdue["total"])
    by_company = {line[column["Company"]]: line for line in lines[: len(rows)]}
    for row in with_amounts:
        note = by_company[row["company_name"]][column["Note"]] or ""
        expected = "" if all_converted else f"Not in the {currency} total: no {currency} rate in this client's"
        assert note.startswith(expected), (row["company_name"], note)
        assert ("total" in note) != all_converted


def test_openapi_describes_the_workbooks(hub: Hub) -> None:
    paths = httpx.get(f"{hub.url}/openapi.json").json()["paths"]
    for path in ("/api/v1/clients/{client_id}/companies/{company_id}/workbook", "/api/v1/key-figures/workbook"):
        answer = paths[path]["get"]
        assert answer["tags"] == ["reports"]
        assert answer["responses"]["200"]["content"] == {XLSX: {"schema": {"type": "string", "format": "binary"}}}
    company = paths["/api/v1/clients/{client_id}/companies/{company_id}/workbook"]["get"]["responses"]
    assert {"404", "502", "503"} <= set(company)
    assert "failure" in str(company["502"])


def test_a_workbook_is_dated_today_where_the_client_is(hub: Hub, firm: dict[str, Any]) -> None:
    """Without a date, the statements are as of the client's today (its card's time zone),
    which east or west of UTC is not UTC's."""
    api = hub.client(OWNER)
    client_id, row = firm["client_id"], firm["rows"][0]
    [listed] = [c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id]
    card = listed["card"]
    zone = zone_off_utcs_date(datetime.now(UTC))
    assert api.put(f"/api/v1/clients/{client_id}", json={**card, "time_zone": zone}).status_code == 202
    try:
        deadline = time.monotonic() + 10
        while (
            next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)["card"].get(
                "time_zone"
            )
            != zone
        ):
            assert time.monotonic() < deadline, "the card's time zone never reached the read model"
            time.sleep(0.2)
        response = api.get(_workbook_url(client_id, row["company_id"]), timeout=60)
        client_today = datetime.now(ZoneInfo(zone)).date().isoformat()
        assert client_today != datetime.now(UTC).date().isoformat()
        # The details pane offers that date as the workbook's.
        details = api.get(f"/api/v1/clients/{client_id}/companies/{row['company_id']}").json()
        assert details["client_today"] == client_today
        workbook = _open(response)
        assert workbook["Balance Sheet"]["A2"].value == f"Balance Sheet — as of {client_today}"
        assert client_today in response.headers["content-disposition"]
        assert workbook["Aged Receivables"]["A4"].value is None  # as of the client's today
        # The client's tomorrow is refused, also where it is UTC's today.
        tomorrow_at_client = (datetime.now(ZoneInfo(zone)).date() + timedelta(days=1)).isoformat()
        refused = api.get(_workbook_url(client_id, row["company_id"]), params={"as_of": tomorrow_at_client})
        assert refused.status_code == 422, refused.text
    finally:
        assert api.put(f"/api/v1/clients/{client_id}", json=card).status_code == 202
