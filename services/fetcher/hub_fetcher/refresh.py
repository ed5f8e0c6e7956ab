"""Reading one client: discover its companies, then compute each company's figures."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from hub_common.events import ClientConnection, CompanyFigures, CompanySnapshot
from hub_fetcher.bc.client import BusinessCentral, Environment
from hub_fetcher.bc.entities import Account, Company, GeneralLedgerSetup, parse_entities, parse_entity
from hub_fetcher.figures.cash import ACCOUNTS_FILTER, cash_from_accounts


@dataclass(frozen=True)
class Discovery:
    companies: list[Company]
    latency_ms: int


class ClientReader:
    def __init__(self, bc: BusinessCentral, *, web_client_base: str) -> None:
        self._bc = bc
        self._web_client_base = web_client_base.rstrip("/")

    @staticmethod
    def environment(connection: ClientConnection) -> Environment:
        return Environment(tenant=connection.tenant, name=connection.environment)

    async def discover(self, connection: ClientConnection) -> Discovery:
        environment = self.environment(connection)
        started = time.monotonic()
        items = await self._bc.get_collection(
            environment,
            f"{self._bc.root(environment)}/companies",
            params={"$select": "id,name,displayName"},
            company_scoped=False,
        )
        latency_ms = int((time.monotonic() - started) * 1000)
        companies = parse_entities(Company, items, "companies")
        return Discovery(companies=companies, latency_ms=latency_ms)

    def web_client_link(self, connection: ClientConnection, company_name: str) -> str:
        return (
            f"{self._web_client_base}/{quote(connection.tenant, safe='')}/"
            f"{quote(connection.environment, safe='')}?company={quote(company_name, safe='')}"
        )

    async def snapshot(
        self,
        connection: ClientConnection,
        company: Company,
        *,
        client_id: uuid.UUID,
        refresh_id: uuid.UUID,
    ) -> CompanySnapshot:
        environment = self.environment(connection)
        setup_document = await self._bc.get_json(
            environment,
            self._bc.company_url(environment, company.id, "generalLedgerSetup"),
            params={"$select": "localCurrencyCode"},
            company_scoped=True,
        )
        setup_items = setup_document.get("value")
        setup = parse_entity(
            GeneralLedgerSetup,
            setup_items[0] if isinstance(setup_items, list) and setup_items else setup_document,
            "generalLedgerSetup",
        )
        account_items = await self._bc.get_collection(
            environment,
            self._bc.company_url(environment, company.id, "accounts"),
            params={
                "$filter": ACCOUNTS_FILTER,
                "$select": "number,displayName,category,subCategory,accountType,netChange",
            },
        )
        read_at = datetime.now(UTC)
        accounts = parse_entities(Account, account_items, "accounts")
        return CompanySnapshot(
            client_id=client_id,
            company_id=company.id,
            company_name=company.name,
            company_display_name=company.display_name,
            refresh_id=refresh_id,
            currency_code=setup.local_currency_code,
            read_at=read_at,
            web_client_link=self.web_client_link(connection, company.name),
            figures=CompanyFigures(cash=cash_from_accounts(accounts, read_at)),
        )
