"""A stand-in for the BC web client, so the hub's "go to company" links land somewhere.

The sandbox's web-client base is ``https://{host}:{port}/bc``, standing in for
``https://businesscentral.dynamics.com``; links keep BC's shape:
``/bc/{tenant}/{environment}?company={name}&page={id}`` (environment defaults to
Production, company to the environment's first company, page to the role center).
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hub_sandbox.client_admin import invite_url
from hub_sandbox.seed import AccountType, CompanyBook
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import (
    PRODUCTION,
    SandboxCompany,
    SandboxEnvironment,
    SandboxTenant,
)

WEB_CLIENT_PREFIX = "/bc"
ROLE_CENTER_PAGE = 9022
CHART_OF_ACCOUNTS_PAGE = 16

# Captions of the pages the hub links to, and a few neighbours worth a demo click.
PAGE_CAPTIONS: dict[int, str] = {
    1: "Company Information",
    16: "Chart of Accounts",
    21: "Customer Card",
    22: "Customer List",
    26: "Vendor Card",
    27: "Vendor List",
    43: "Sales Invoice",
    51: "Purchase Invoice",
    118: "General Ledger Setup",
    132: "Posted Sales Invoice",
    138: "Posted Purchase Invoice",
    143: "Posted Sales Invoices",
    146: "Posted Purchase Invoices",
    9022: "Business Manager Role Center",
    9301: "Sales Invoices",
    9308: "Purchase Invoices",
}


def web_client_url(base_url: str, tenant: SandboxTenant, environment: str, **query: str) -> str:
    """A sandbox web-client link, in BC's ``/{tenant}/{environment}?...`` form."""
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{base_url}{WEB_CLIENT_PREFIX}/{tenant.domain}/{environment}{suffix}"


def web_client_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Web client"])

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        base = str(request.base_url).rstrip("/")
        items = []
        for tenant in state.catalogue.tenants:
            links = " ".join(
                f'<a href="{escape(web_client_url(base, tenant, e.name))}">{escape(e.name)}</a>'
                for e in tenant.environments
            )
            consent = "consented" if state.is_consented(tenant) else "no consent"
            invite = f'<a href="{escape(invite_url(base, tenant))}">Invite external accountant</a>'
            items.append(
                f"<li>{escape(tenant.display_name)} ({escape(tenant.domain)}, {consent}): {links} · {invite}</li>"
            )
        body = (
            "<h1>Accountant Hub sandbox</h1><p>Stands in for Microsoft Entra ID and Business"
            " Central. Tenants:</p><ul>" + "".join(items) + "</ul>"
            '<p><a href="/_sandbox/tenants">/_sandbox/tenants</a> (JSON)</p>'
        )
        return _page("Accountant Hub sandbox", body)

    @router.get(WEB_CLIENT_PREFIX + "/{tenant}", response_class=HTMLResponse)
    @router.get(WEB_CLIENT_PREFIX + "/{tenant}/", response_class=HTMLResponse)
    @router.get(WEB_CLIENT_PREFIX + "/{tenant}/{environment}", response_class=HTMLResponse)
    @router.get(WEB_CLIENT_PREFIX + "/{tenant}/{environment}/", response_class=HTMLResponse)
    async def web_client(request: Request, tenant: str, environment: str = PRODUCTION) -> HTMLResponse:
        found_tenant = state.catalogue.find(tenant)
        if found_tenant is None:
            return _not_found(f"The tenant '{tenant}' does not exist.")
        found_environment = found_tenant.environment(environment)
        if found_environment is None:
            return _not_found(f"The environment '{environment}' does not exist.")
        company = _company(found_environment, request.query_params.get("company"))
        if company is None:
            name = request.query_params.get("company", "")
            return _not_found(f"The company '{name}' does not exist.")
        page = _page_number(request.query_params.get("page"))
        base = str(request.base_url).rstrip("/")
        return _company_page(base, found_tenant, found_environment, company, page, request, state.book(company))

    return router


def _company(environment: SandboxEnvironment, name: str | None) -> SandboxCompany | None:
    if not name:
        return environment.companies[0] if environment.companies else None
    return environment.company_named(name) or next(
        (c for c in environment.companies if c.name.casefold() == name.casefold()), None
    )


def _page_number(text: str | None) -> int:
    try:
        return int(text) if text else ROLE_CENTER_PAGE
    except ValueError:
        return ROLE_CENTER_PAGE


def _company_page(
    base: str,
    tenant: SandboxTenant,
    environment: SandboxEnvironment,
    company: SandboxCompany,
    page: int,
    request: Request,
    book: CompanyBook,
) -> HTMLResponse:
    caption = PAGE_CAPTIONS.get(page, "Page")
    title = f"Business Central sandbox — {company.name} — page {page} {caption}"
    details = {key: value for key, value in request.query_params.items() if key not in ("company", "page")}
    rows = "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in details.items())

    def link(number: int) -> str:
        url = web_client_url(base, tenant, environment.name, company=company.name, page=str(number))
        return f'<a href="{escape(url)}">{escape(PAGE_CAPTIONS[number])}</a>'

    links = " · ".join(link(number) for number in (ROLE_CENTER_PAGE, CHART_OF_ACCOUNTS_PAGE, 1, 9301, 9308))
    # BC's Users page action "Invite external accountant".
    links += f' · <a href="{escape(invite_url(base, tenant))}">Invite external accountant</a>'
    body = (
        f"<h1>{escape(company.name)}</h1>"
        f"<p>{escape(tenant.display_name)} · environment {escape(environment.name)}"
        f" · page {page} <strong>{escape(caption)}</strong></p>"
        + (f"<table>{rows}</table>" if rows else "")
        + f"<nav>{links}</nav>"
        + (_chart_of_accounts(book) if page == CHART_OF_ACCOUNTS_PAGE else "")
    )
    return _page(title, body)


def _chart_of_accounts(book: CompanyBook) -> str:
    symbol = book.ledger_setup.local_currency_symbol
    rows = "".join(
        f"<tr><td>{escape(a.number)}</td>"
        f"<td>{'<strong>' if a.account_type is not AccountType.POSTING else ''}"
        f"{escape(a.display_name)}</td><td>{escape(a.sub_category)}</td>"
        f'<td style="text-align:right">{escape(symbol)}{a.net_change:,.2f}</td></tr>'
        for a in book.accounts
    )
    return f"<table><tr><th>No.</th><th>Name</th><th>Subcategory</th><th>Net Change</th></tr>{rows}</table>"


def _not_found(message: str) -> HTMLResponse:
    return _page("Business Central sandbox — not found", f"<p>{escape(message)}</p>", status=404)


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{padding:.2rem .6rem;"
        "border-bottom:1px solid #ddd;text-align:left}nav{margin:1rem 0}</style>"
        f"</head><body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)
