"""Reading one client: discover its companies, then compute each company's figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from hub_common.events import (
    MAX_COMPANIES_PER_ENVIRONMENT,
    MAX_COMPANY_LIST_BYTES,
    MAX_PROBED_COMPANIES,
    ClientConnection,
    CompanySnapshot,
    ExchangeRates,
    FailureKind,
)
from hub_common.logging import get_logger
from hub_common.money import as_booked
from hub_common.time_zones import client_today
from hub_fetcher.bc.client import BatchRead, BatchRequest, BusinessCentral, Environment, slot_taken
from hub_fetcher.bc.entities import ActivityCues, Company, CurrencyExchangeRate, FinanceCues, parse_entities
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.figures.company import (
    BY_RULE,
    ChosenAccounts,
    CompanyRecords,
    CueFigures,
    company_figures,
    local_currency,
)
from hub_fetcher.figures.currencies import ToLocalCurrency, exchange_rates, rates_unavailable


@dataclass(frozen=True)
class Discovery:
    companies: list[Company]
    latency_ms: int


logger = get_logger(__name__)

# How long an environment whose cue services are not published (BC 30 on) is not asked again.
CUES_UNPUBLISHED_RECHECK_SECONDS = 6 * 3600
# How long an environment whose cue services answered later than the grace below is read
# without them: each of its companies would otherwise wait out the same slow cue pages,
# holding the tenant's BC slots. (A quick refusal, a 429 or 503, costs the company nothing:
# it goes without cues that once.)
CUES_BUSY_RECHECK_SECONDS = 600
# How long a company's cue figures may lag behind its $batch before it is done without them
# (BC computes the cues as the pages open, so they can be the slowest call).
CUES_GRACE_SECONDS = 10.0
# How long the cue requests may wait for one of the tenant's BC slots after the $batch
# answered: the cues are optional, and a busy or throttled tenant must not hold a company
# whose figures are read already until the refresh's deadline.
CUES_SLOT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class CuesAtBc:
    """Set as each cue service's request reaches BC (holds one of the tenant's slots)."""

    activity: asyncio.Event = field(default_factory=asyncio.Event)
    finance: asyncio.Event = field(default_factory=asyncio.Event)


class ClientReader:
    def __init__(self, bc: BusinessCentral, *, web_client_base: str, use_cue_services: bool = True) -> None:
        self._bc = bc
        self._web_client_base = web_client_base.rstrip("/")
        self._use_cue_services = use_cue_services
        # Environments read without the cue services until then (time.monotonic()).
        self._cues_skipped_until: dict[Environment, float] = {}

    @staticmethod
    def environment(connection: ClientConnection) -> Environment:
        return Environment(tenant=connection.read_tenant, name=connection.environment)

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
        _check_list_fits(companies)
        listed = Counter(company.id for company in companies)
        repeated = sorted(str(company_id) for company_id, count in listed.items() if count > 1)
        if repeated:
            # Outcomes are per company id: two companies under one id cannot both be shown.
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                message=f"companies: {len(repeated)} id(s) listed more than once ({', '.join(repeated[:3])})",
            )
        return Discovery(companies=companies, latency_ms=latency_ms)

    async def unreadable(
        self, connection: ClientConnection, companies: list[Company]
    ) -> tuple[list[uuid.UUID], FetchFailure | None]:
        """The companies listed whose data BC refuses to the hub's app, and BC's answer for
        the first: listing companies needs no permission in them, reading their books does
        (the app's permission sets), so a test that stopped at the list called a client
        readable whose every refresh then failed. One small read of each, in one $batch."""
        probed = companies[:MAX_PROBED_COMPANIES]
        if not probed:
            return [], None
        try:
            read = await self._bc.read_batch(
                self.environment(connection),
                [
                    BatchRequest(
                        str(company.id),
                        f"companies({company.id})/generalLedgerSetup?$select=localCurrencyCode",
                        optional=True,
                    )
                    for company in probed
                ],
            )
        except FetchFailure as busy:
            if not busy.transient:
                raise
            # BC busy (throttled, a timeout): the companies were listed, which is the test's
            # answer; whether each can be read is left unsaid rather than failing it.
            logger.info("companies not probed", reason=busy.kind.value)
            return [], None
        refused = [
            company.id
            for company in probed
            if (failure := read.failures.get(str(company.id))) is not None
            and failure.kind is FailureKind.NO_COMPANY_ACCESS
        ]
        return refused, read.failures[str(refused[0])] if refused else None

    def web_client_link(self, connection: ClientConnection, company_name: str) -> str:
        """The company in the client's BC web client: a partner-hosted app's own, else the hub's."""
        base = f"https://{connection.web_client_host}" if connection.web_client_host else self._web_client_base
        return (
            f"{base}/{quote(connection.tenant, safe='')}/"
            f"{quote(connection.environment, safe='')}?company={quote(company_name, safe='')}"
        )

    def document_link(self, connection: ClientConnection, company_name: str, page: int, number: str) -> str:
        """A link that opens one document in the client's BC web client."""
        document_filter = quote(f"'No.' IS '{number}'", safe="")
        return f"{self.web_client_link(connection, company_name)}&page={page}&filter={document_filter}"

    async def _cue_pages(
        self, environment: Environment, company_name: str, at_bc: CuesAtBc
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | FetchFailure:
        """Both cue services' records, read at once, or the first failure (the other read is
        then cancelled: it would hold one of the tenant's BC slots for nothing).

        Not from BC's read-only replica: each cue page inserts its company's cue record when
        it opens and finds none (a company nobody opened a role centre of), which the
        replica refuses, every refresh."""

        async def read(service: str, select: str, reached: asyncio.Event) -> list[dict[str, Any]]:
            slot_taken.set(reached)  # this task's own context
            return await self._bc.get_collection(
                environment,
                self._bc.cue_service_url(environment, company_name, service),
                params={"$select": select},
                read_only=False,
            )

        try:
            async with asyncio.TaskGroup() as group:
                activity = group.create_task(
                    read(
                        "AccountantPortalActivityCues",
                        "OverduePurchInvoiceAmountDecimal,OverdueSalesInvoiceAmountDecimal",
                        at_bc.activity,
                    )
                )
                finance = group.create_task(
                    read("AccountantPortalFinanceCues", "CashAccountsBalanceAmountDecimal", at_bc.finance)
                )
        except ExceptionGroup as raised:
            failures, others = raised.split(FetchFailure)
            if others is not None:
                raise others.exceptions[0] from raised  # what the callers would meet without the group
            assert failures is not None
            first = failures.exceptions[0]
            assert isinstance(first, FetchFailure)
            return first
        return activity.result(), finance.result()

    def _skip_cues(self, environment: Environment, seconds: float) -> None:
        self._cues_skipped_until[environment] = time.monotonic() + seconds

    async def _cues_within_grace(
        self, environment: Environment, cues_read: asyncio.Task[CueFigures | None], at_bc: CuesAtBc
    ) -> CueFigures | None:
        """The cue figures if BC gives them within CUES_GRACE_SECONDS of the $batch's answer
        and of their own requests reaching it, else None (and the environment goes without
        them for a while).

        The grace is for BC's answer, not for the tenant's queue: with five companies read
        at once, their $batches hold every BC slot while the cue requests wait for one, and
        a grace counted from the $batch alone gave up on cues BC answered at once, leaving
        some companies of one refresh with BC's cue totals and others with the API's."""

        async def both_reached_bc() -> None:
            await at_bc.activity.wait()
            await at_bc.finance.wait()

        reached = asyncio.create_task(both_reached_bc())
        first: set[asyncio.Future[Any]] = {cues_read, reached}
        try:
            await asyncio.wait(first, timeout=CUES_SLOT_WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if reached.done() or cues_read.done():
                done, _ = await asyncio.wait({cues_read}, timeout=CUES_GRACE_SECONDS)
            else:
                done = set()  # still waiting for a slot: as slow as cues that do not answer
        except BaseException:
            cues_read.cancel()  # the refresh was cancelled (its deadline, a shutdown)
            raise
        finally:
            reached.cancel()
        if done:
            return cues_read.result()
        cues_read.cancel()
        await asyncio.wait({cues_read})
        self._skip_cues(environment, CUES_BUSY_RECHECK_SECONDS)
        logger.info("cue services too slow; figures from API v2.0", grace_seconds=CUES_GRACE_SECONDS)
        return None

    async def _read_cues(self, environment: Environment, company_name: str, at_bc: CuesAtBc) -> CueFigures | None:
        """The cue services' figures, or None where they are not published (BC 30 on) or
        could not be read this time."""
        if not self._use_cue_services or self._cues_skipped_until.get(environment, 0) > time.monotonic():
            return None
        pages = await self._cue_pages(environment, company_name, at_bc)
        if isinstance(pages, FetchFailure):
            failure = pages
            # The cues are a fast path only: any failure leaves the figures to API v2.0, read
            # in the same round trip. A busy or slow BC (429, 503, a timeout) is no reason
            # to fail the company when its $batch answered; a 429's hold-off still applies
            # to the tenant's next requests. BC answers "No HTTP resource was found that
            # matches the request URI" when the service is not published (BC 30 on), and
            # refuses a $select of the *Decimal fields where its cue pages lack them:
            # remember those for the environment. A refusal of this company's cues
            # (permissions) goes without cues this time.
            message = (failure.message or "").lower()
            if failure.http_status in (HTTP_NOT_FOUND, HTTP_BAD_REQUEST) and (
                "no http resource" in message or "could not find a property" in message
            ):
                self._skip_cues(environment, CUES_UNPUBLISHED_RECHECK_SECONDS)
            logger.info(
                "cue services not used; figures from API v2.0",
                kind=failure.kind.value,
                http_status=failure.http_status,
                bc_error_code=failure.bc_error_code,
            )
            return None
        activity, finance = pages
        if not activity or not finance:
            return None
        try:
            activity_cues = parse_entities(ActivityCues, activity[:1], "AccountantPortalActivityCues")[0]
            finance_cues = parse_entities(FinanceCues, finance[:1], "AccountantPortalFinanceCues")[0]
        except FetchFailure as failure:
            # A cue record without the *Decimal fields (older BC): API v2.0 gives the figures.
            logger.info("cue records unreadable; figures from API v2.0", message=failure.message)
            return None
        # Cue decimals arrive as JSON numbers (52424.7); amounts are kept as booked.
        return CueFigures(
            cash_accounts_balance=as_booked(finance_cues.cash_accounts_balance),
            overdue_sales_amount=as_booked(activity_cues.overdue_sales_invoice_amount),
            overdue_purchase_amount=as_booked(activity_cues.overdue_purchase_invoice_amount),
        )

    async def snapshot(
        self,
        connection: ClientConnection,
        company: Company,
        *,
        client_id: uuid.UUID,
        refresh_id: uuid.UUID,
        time_zone: str | None = None,
        today: dt.date | None = None,
        chosen_accounts: ChosenAccounts = BY_RULE,
    ) -> CompanySnapshot:
        """Every figure of one company from API v2.0, in one $batch round trip (figures.company
        computes them), as of ``today`` (default: the date now in the client's ``time_zone``)."""
        environment = self.environment(connection)
        today = today or client_today(time_zone, datetime.now(UTC))
        at_bc = CuesAtBc()
        cues_read = asyncio.create_task(self._read_cues(environment, company.name, at_bc))
        try:
            batch = await self._bc.read_batch(environment, company_requests(company.id, today))
        except BaseException:
            # Without the $batch the company fails: its cue reads would hold BC slots for nothing.
            cues_read.cancel()
            await asyncio.wait({cues_read})
            raise
        # The figures are as of BC's answer, not of the wait for the cues after it: a
        # refresh that waited out the cues' grace would otherwise look newer than one
        # requested later that read BC after it, and its figures would replace theirs.
        read_at = datetime.now(UTC)
        cues = await self._cues_within_grace(environment, cues_read, at_bc)
        records = CompanyRecords.parse(batch.collections)

        def document_link(page: int, number: str) -> str:
            return self.document_link(connection, company.name, page, number)

        try:
            local = local_currency(records)
            rates = company_exchange_rates(batch, today=today, local_currency=local)
            figures = company_figures(
                records,
                today=today,
                read_at=read_at,
                document_link=document_link,
                cues=cues,
                chosen_accounts=chosen_accounts,
                to_local=ToLocalCurrency.at(rates, local),
            )
            return CompanySnapshot(
                client_id=client_id,
                company_id=company.id,
                company_name=company.name,
                company_display_name=company.display_name,
                refresh_id=refresh_id,
                currency_code=local,
                read_at=read_at,
                web_client_link=self.web_client_link(connection, company.name),
                figures=figures,
                exchange_rates=rates,
                accounts_revision=chosen_accounts.revision,
            )
        except (ValidationError, ArithmeticError) as error:
            # The entities bound each amount, yet the sums of very many can still outgrow
            # what an event holds. Any other exception would escape the handlers'
            # classification: the refresh redelivered until dead-lettered, with no outcome.
            raise FetchFailure(
                FailureKind.BAD_RESPONSE, message=f"the company's figures could not be built: {_cause(error)}"
            ) from error


def _cause(error: ValidationError | ArithmeticError) -> str:
    """What went wrong, without the values (tenant input stays out of messages and logs)."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return type(error).__name__


def company_exchange_rates(batch: BatchRead, *, today: dt.date, local_currency: str) -> ExchangeRates:
    """The rates in effect today, or why BC did not give them: a tenant without the entity
    or with a bad answer still gets every other figure."""
    failure = batch.failures.get(EXCHANGE_RATES)
    if failure is not None:
        status = f" (HTTP {failure.http_status})" if failure.http_status else ""
        return rates_unavailable(today, f"currencyExchangeRates{status}: {failure.message or failure.kind.value}")
    try:
        rows = parse_entities(CurrencyExchangeRate, batch.collections[EXCHANGE_RATES], "currencyExchangeRates")
    except FetchFailure as bad:
        return rates_unavailable(today, bad.message or bad.kind.value)
    return exchange_rates(rows, as_of=today, local_currency=local_currency)


HTTP_BAD_REQUEST = 400
HTTP_NOT_FOUND = 404
# The batch read of the exchange rates: optional, since not every tenant gives them.
EXCHANGE_RATES = "exchange_rates"


def company_requests(company_id: uuid.UUID, today: dt.date) -> list[BatchRequest]:
    """The reads behind every figure of one company, each with only the fields it needs
    (keyed as ``CompanyRecords.parse`` expects them)."""
    base = f"companies({company_id})"
    first_of_month = today.replace(day=1).isoformat()
    invoice_fields = "number,customerName,billToName,status,dueDate,remainingAmount,currencyCode"
    return [
        BatchRequest("setup", f"{base}/generalLedgerSetup?$select=localCurrencyCode"),
        BatchRequest(
            "accounts",
            f"{base}/accounts?$filter=accountType eq 'Posting'"
            "&$select=number,displayName,category,subCategory,accountType,netChange",
        ),
        # A corrective invoice stays Corrective once paid: which are owed, its remaining amount says.
        BatchRequest(
            "open_sales_invoices",
            f"{base}/salesInvoices?$filter=status eq 'Open' or status eq 'Corrective'&$select={invoice_fields}",
        ),
        BatchRequest(
            "open_purchase_invoices",
            f"{base}/purchaseInvoices?$filter=status eq 'Open'"
            "&$select=number,vendorName,payToName,status,dueDate,totalAmountIncludingTax,currencyCode",
        ),
        BatchRequest(
            "unposted_sales_invoices",
            f"{base}/salesInvoices?$filter=status eq 'Draft' or status eq 'In_x0020_Review'"
            "&$select=number,status,totalAmountIncludingTax,currencyCode",
        ),
        BatchRequest(
            "customer_sales_this_month",
            f"{base}/customerSales?$filter=dateFilter_FilterOnly ge {first_of_month}"
            f" and dateFilter_FilterOnly le {today.isoformat()}&$select=customerNumber,totalSalesAmount",
        ),
        BatchRequest("sales_orders", f"{base}/salesOrders?$select=status,totalAmountIncludingTax,currencyCode"),
        BatchRequest("sales_quotes", f"{base}/salesQuotes?$select=status,totalAmountIncludingTax,currencyCode"),
        BatchRequest(
            EXCHANGE_RATES,
            f"{base}/currencyExchangeRates?$filter=startingDate le {today.isoformat()}"
            "&$select=currencyCode,startingDate,exchangeRateAmount,relationalCurrencyCode,relationalExchangeRateAmount",
            optional=True,
        ),
    ]


def _check_list_fits(companies: list[Company]) -> None:
    """The companies a discovery or a test names go out in one event: a list it cannot carry
    would be refused after BC was read, and the refresh or the test would never answer."""
    if len(companies) > MAX_COMPANIES_PER_ENVIRONMENT:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE,
            message=(
                f"companies: {len(companies)} listed; the hub reads at most "
                f"{MAX_COMPANIES_PER_ENVIRONMENT} companies of one environment"
            ),
        )
    # Each company as the events carry it: its id, name and display name, quoted.
    size = sum(80 + len(c.name.encode()) + len((c.display_name or "").encode()) for c in companies)
    if size > MAX_COMPANY_LIST_BYTES:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE,
            message=(
                f"companies: the names of the {len(companies)} companies take {size // 1000:,} KB; "
                f"the hub carries at most {MAX_COMPANY_LIST_BYTES // 1000:,} KB of them"
            ),
        )
