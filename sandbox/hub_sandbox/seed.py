"""Deterministic demo data of one company, generated lazily from the company's seed.

A company's book is built the first time someone reads it for a business date and cached
(bounded LRU); the same catalogue seed and date give the same book on every start and
machine (``random.Random`` seeded with a string is stable across processes, unlike
``hash()``).

How the book is built, so every figure agrees with the documents it sums:

1. :class:`hub_sandbox.documents.DocumentBuilder` makes customers, vendors and documents:
   the open items (posted invoices with status Open, amounts independent of the date, due
   dates relative to the business date), the paid sales history of the fiscal year so far,
   and unposted invoices, orders and quotes.
2. The receivables account's netChange is the sum of the open sales invoices'
   remainingAmount; the payables account's is minus the sum of the open purchase invoices'
   totalAmountIncludingTax (BC shows credit balances negative).
3. The sales accounts hold the posted sales of the fiscal year (1 January to the business
   date, calendar fiscal years), excluding tax, split by product and service invoices.
   Costs and expenses are plausible annual amounts pro rata of the year elapsed.
4. The other balance-sheet accounts get plausible amounts, and Retained Earnings takes
   whatever makes the trial balance sum to zero.

So balances of the balance sheet (cash, receivables, payables, taxes) never depend on the
date; the income statement and Retained Earnings do, as they would in a real company.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache

from hub_sandbox.documents import (
    CompanyDocuments,
    Document,
    DocumentBuilder,
    OpenItem,
    Party,
    SalesLine,
)
from hub_sandbox.tenants import Locale, SandboxCompany, TaxStyle

CENT = Decimal("0.01")


class AccountCategory(StrEnum):
    """BC's enum glAccountCategory, spelled as the API writes it."""

    BLANK = "_x0020_"
    ASSETS = "Assets"
    LIABILITIES = "Liabilities"
    EQUITY = "Equity"
    INCOME = "Income"
    COST_OF_GOODS_SOLD = "Cost_x0020_of_x0020_Goods_x0020_Sold"
    EXPENSE = "Expense"


class AccountType(StrEnum):
    """BC's enum glAccountType."""

    POSTING = "Posting"
    HEADING = "Heading"
    TOTAL = "Total"
    BEGIN_TOTAL = "Begin-Total"
    END_TOTAL = "End-Total"


class AccountRole(StrEnum):
    """What an account is for. Not a BC field: it lets later stages post documents to the
    right account and compute the figures the hub is expected to show."""

    NONE = "none"  # headings and totals
    CASH = "cash"
    RECEIVABLES = "receivables"
    INVENTORY = "inventory"
    PREPAID_EXPENSES = "prepaid_expenses"
    EQUIPMENT = "equipment"
    ACCUMULATED_DEPRECIATION = "accumulated_depreciation"
    PAYABLES = "payables"
    OUTPUT_TAX = "output_tax"  # sales VAT / sales tax collected, not yet settled
    INPUT_TAX = "input_tax"  # purchase VAT to reclaim
    TAX_SETTLEMENT = "tax_settlement"  # the settled VAT of the last period, not yet paid
    PAYROLL_LIABILITIES = "payroll_liabilities"
    LOANS = "loans"
    SHARE_CAPITAL = "share_capital"
    RETAINED_EARNINGS = "retained_earnings"
    PRODUCT_SALES = "product_sales"
    SERVICE_SALES = "service_sales"
    SALES_DISCOUNTS = "sales_discounts"
    INTEREST_INCOME = "interest_income"
    COST_OF_GOODS_SOLD = "cost_of_goods_sold"
    EXPENSE = "expense"


TAX_ROLES = frozenset({AccountRole.OUTPUT_TAX, AccountRole.INPUT_TAX, AccountRole.TAX_SETTLEMENT})

# BC's default subcategory for tax accounts. Some companies add their own subcategory
# (BC lets users edit G/L Account Categories); the sandbox uses this one for them.
DEFAULT_TAX_SUB_CATEGORY = "Current Liabilities"
CUSTOM_TAX_SUB_CATEGORY = "Taxes Payable"


@dataclass(frozen=True)
class GLAccount:
    id: uuid.UUID
    number: str
    display_name: str
    category: AccountCategory
    sub_category: str
    account_type: AccountType
    direct_posting: bool
    blocked: bool
    # All-time net change, as the API page computes it (no date filter): the balance.
    net_change: Decimal
    role: AccountRole
    last_modified: dt.datetime


@dataclass(frozen=True)
class CompanyInformation:
    id: uuid.UUID
    display_name: str
    address_line1: str
    address_line2: str
    city: str
    state: str
    country: str
    postal_code: str
    phone_number: str
    fax_number: str
    email: str
    website: str
    tax_registration_number: str
    currency_code: str
    industry: str
    contact_person: str
    last_modified: dt.datetime


@dataclass(frozen=True)
class GeneralLedgerSetup:
    id: uuid.UUID
    local_currency_code: str
    local_currency_symbol: str
    shortcut_dimension_codes: tuple[str, ...]  # eight codes, "" when unused
    last_modified: dt.datetime


class GLDocumentType(StrEnum):
    """BC's enum genJournalDocumentType, as the API writes it (the ones the sandbox posts)."""

    BLANK = "_x0020_"
    PAYMENT = "Payment"
    INVOICE = "Invoice"
    CREDIT_MEMO = "Credit_x0020_Memo"


@dataclass(frozen=True)
class GLEntry:
    """One G/L entry posted at run time (:mod:`hub_sandbox.book_changes`). ``amount`` is
    signed: debit positive."""

    id: uuid.UUID
    entry_number: int
    posting_date: dt.date
    document_type: GLDocumentType
    document_number: str
    account_id: uuid.UUID
    account_number: str
    description: str
    amount: Decimal
    last_modified: dt.datetime


@dataclass(frozen=True)
class CompanyBook:
    company: SandboxCompany
    information: CompanyInformation
    ledger_setup: GeneralLedgerSetup
    accounts: tuple[GLAccount, ...]
    documents: CompanyDocuments
    # The date the book was built for: "today" for due dates and the fiscal year so far.
    business_date: dt.date
    # G/L entries posted at run time, already included in the accounts' balances.
    posted_entries: tuple[GLEntry, ...] = ()
    _by_role: dict[AccountRole, tuple[GLAccount, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_role: dict[AccountRole, list[GLAccount]] = {}
        for account in self.accounts:
            by_role.setdefault(account.role, []).append(account)
        object.__setattr__(self, "_by_role", {k: tuple(v) for k, v in by_role.items()})

    def accounts_with_role(self, role: AccountRole) -> tuple[GLAccount, ...]:
        return self._by_role.get(role, ())

    def balance_of(self, role: AccountRole) -> Decimal:
        return sum((a.net_change for a in self.accounts_with_role(role)), Decimal(0))

    def opening_balances(self) -> list[tuple[GLAccount, Decimal]]:
        """The seeded balance of each posting account that has one: the book's balances
        before anything was posted at run time (one opening G/L entry each)."""
        posted: dict[uuid.UUID, Decimal] = {}
        for entry in self.posted_entries:
            posted[entry.account_id] = posted.get(entry.account_id, Decimal(0)) + entry.amount
        balances = [
            (a, a.net_change - posted.get(a.id, Decimal(0)))
            for a in self.accounts
            if a.account_type is AccountType.POSTING
        ]
        return [(a, amount) for a, amount in balances if amount]

    @property
    def open_receivables(self) -> tuple[OpenItem, ...]:
        return self.documents.open_receivables

    @property
    def open_payables(self) -> tuple[OpenItem, ...]:
        return self.documents.open_payables

    @property
    def customers(self) -> tuple[Party, ...]:
        return self.documents.customers

    @property
    def vendors(self) -> tuple[Party, ...]:
        return self.documents.vendors

    @property
    def sales_invoices(self) -> tuple[Document, ...]:
        return self.documents.sales_invoices

    @property
    def sales_credit_memos(self) -> tuple[Document, ...]:
        return self.documents.sales_credit_memos

    @property
    def purchase_invoices(self) -> tuple[Document, ...]:
        return self.documents.purchase_invoices

    @property
    def ytd_sales_excluding_tax(self) -> Decimal:
        """Posted sales of the fiscal year, excluding tax (a positive amount)."""
        return -(self.balance_of(AccountRole.PRODUCT_SALES) + self.balance_of(AccountRole.SERVICE_SALES))

    @property
    def fiscal_year_start(self) -> dt.date:
        """Demo companies keep calendar fiscal years."""
        return dt.date(self.business_date.year, 1, 1)


# Bounded: with thousands of companies only the ones being read stay in memory.
BOOK_CACHE_SIZE = 1024


@lru_cache(maxsize=BOOK_CACHE_SIZE)
def company_book(company: SandboxCompany, business_date: dt.date) -> CompanyBook:
    """The company's book on a business date; built once per process and date, identical
    on every build."""
    return build_book(company, business_date)


def build_book(company: SandboxCompany, business_date: dt.date) -> CompanyBook:
    """Build a book without the cache (tests use it to prove rebuilding gives the same)."""
    return _BookBuilder(company, business_date).build()


# ---------------------------------------------------------------------------------------

_STREETS = {
    "GB": ("High Street", "Station Road", "Church Lane", "Mill Road", "Victoria Street"),
    "US": ("Main Street", "Oak Avenue", "Pine Street", "Market Street", "Lake Drive"),
    "DK": ("Strandvejen", "Vestergade", "Nørregade", "Søndergade", "Havnegade"),
    "DE": ("Hauptstraße", "Bahnhofstraße", "Gartenstraße", "Schulstraße", "Lindenallee"),
}
_US_STATES = {"Seattle": "WA", "Denver": "CO", "Austin": "TX", "Chicago": "IL", "Atlanta": "GA"}
_WEB_DOMAINS = {"GB": "co.uk", "US": "com", "DK": "dk", "DE": "de"}
_FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emil", "Fiona")
_LAST_NAMES = ("Hall", "Berg", "Cole", "Moreau", "Keller")
_INDUSTRIES = ("Manufacturing", "Retail", "Services", "Wholesale", "Construction")


class _BookBuilder:
    def __init__(self, company: SandboxCompany, business_date: dt.date) -> None:
        self.company = company
        self.business_date = business_date
        self.locale: Locale = company.locale
        self.rng = random.Random(company.data_seed)
        # Size of the business: the same chart, amounts from a corner shop to a mid-size firm.
        self.scale = self.locale.amount_scale * Decimal(self.rng.choice(("0.4", "1", "1", "2.5", "6")))
        self.accounts: list[GLAccount] = []

    def money(self, low: int, high: int) -> Decimal:
        """A random amount between low and high (before scaling), to the cent."""
        cents = self.rng.randint(low * 100, high * 100)
        return (Decimal(cents) / 100 * self.scale).quantize(CENT, ROUND_HALF_UP)

    def annual(self, low: int, high: int, elapsed: Decimal) -> Decimal:
        """An annual amount, pro rata of the fiscal year elapsed."""
        return (self.money(low, high) * elapsed).quantize(CENT, ROUND_HALF_UP)

    def share(self, amount: Decimal, low: float, high: float) -> Decimal:
        return (amount * Decimal(str(round(self.rng.uniform(low, high), 4)))).quantize(CENT)

    def modified_at(self) -> dt.datetime:
        return self.company.created_at + dt.timedelta(days=self.rng.randint(1, 500), seconds=self.rng.randint(0, 36000))

    def add(
        self,
        number: str,
        name: str,
        category: AccountCategory,
        sub_category: str = "",
        account_type: AccountType = AccountType.POSTING,
        role: AccountRole = AccountRole.NONE,
        net_change: Decimal = Decimal(0),
        *,
        direct_posting: bool = True,
        blocked: bool = False,
    ) -> None:
        self.accounts.append(
            GLAccount(
                id=uuid.uuid5(self.company.id, f"account/{number}"),
                number=number,
                display_name=name,
                category=category,
                sub_category=sub_category,
                account_type=account_type,
                direct_posting=direct_posting and account_type is AccountType.POSTING,
                blocked=blocked,
                net_change=net_change,
                role=role,
                last_modified=self.modified_at(),
            )
        )

    # -- the book -----------------------------------------------------------------------

    def build(self) -> CompanyBook:
        company, locale, rng = self.company, self.locale, self.rng
        documents = DocumentBuilder(company, rng, self.business_date, self.scale).build()
        posted_this_year = [
            d
            for d in documents.sales_invoices
            if d.posted and self.business_date.year == d.posting_date.year and d.posting_date <= self.business_date
        ]
        credited_this_year = [
            d
            for d in documents.sales_credit_memos
            if self.business_date.year == d.posting_date.year and d.posting_date <= self.business_date
        ]
        receivables_balance = sum(
            (d.remaining_amount for d in documents.sales_invoices if d.is_open_posted_invoice), Decimal(0)
        )
        payables_balance = -sum(
            (d.amount_including_tax for d in documents.purchase_invoices if d.is_open_posted_invoice),
            Decimal(0),
        )
        # Costs and expenses accrue over the year: scale annual amounts by the part elapsed.
        elapsed = Decimal(self.business_date.timetuple().tm_yday) / Decimal(365)
        tax_sub_category = rng.choice((DEFAULT_TAX_SUB_CATEGORY, CUSTOM_TAX_SUB_CATEGORY))

        # Short local names keep the chart below readable as a table.
        assets, liabilities, equity = (
            AccountCategory.ASSETS,
            AccountCategory.LIABILITIES,
            AccountCategory.EQUITY,
        )
        income, cogs, expense = (
            AccountCategory.INCOME,
            AccountCategory.COST_OF_GOODS_SOLD,
            AccountCategory.EXPENSE,
        )
        Role = AccountRole
        Kind = AccountType

        # Income statement amounts first: the balance sheet's tax accounts derive from them.
        product_sales = _sales_of(posted_this_year, SalesLine.PRODUCTS) - _sales_of(
            credited_this_year, SalesLine.PRODUCTS
        )
        service_sales = _sales_of(posted_this_year, SalesLine.SERVICES) - _sales_of(
            credited_this_year, SalesLine.SERVICES
        )
        # The unsettled tax of the quarter: independent of the date, like every balance-sheet
        # balance (the sales accounts hold the whole fiscal year to date).
        quarter_sales = self.money(20_000, 150_000)
        quarter_purchases = self.share(quarter_sales, 0.4, 0.7)
        rate = locale.tax_rate / 100

        self.add("10000", "BALANCE SHEET", AccountCategory.BLANK, account_type=Kind.HEADING)
        self.add("10001", "ASSETS", assets, account_type=Kind.BEGIN_TOTAL)
        # Totals carry the subcategory too, as in BC: a client must filter on Posting.
        self.add("10100", "Liquid Assets", assets, "Cash", Kind.BEGIN_TOTAL)
        checking = (
            -self.money(500, 6000) if rng.random() < 0.08 else self.money(4_000, 90_000)
        )  # now and then an overdraft
        self.add("10110", "Checking Account", assets, "Cash", role=Role.CASH, net_change=checking)
        self.add("10120", "Savings Account", assets, "Cash", role=Role.CASH, net_change=self.money(10_000, 150_000))
        self.add("10130", "Petty Cash", assets, "Cash", role=Role.CASH, net_change=self.money(100, 900))
        if rng.random() < 0.5:
            self.add(
                "10140",
                "Business Deposit Account",
                assets,
                "Cash",
                role=Role.CASH,
                net_change=self.money(2_000, 40_000),
            )
        if rng.random() < 0.3:
            # A closed bank account: blocked, zero balance, still a posting cash account.
            self.add("10190", "Old Bank Account", assets, "Cash", role=Role.CASH, blocked=True)
        self.add("10199", "Total Liquid Assets", assets, "Cash", Kind.END_TOTAL)
        self.add(
            "10400",
            "Accounts Receivable",
            assets,
            "Accounts Receivable",
            role=Role.RECEIVABLES,
            net_change=receivables_balance,
            direct_posting=False,
        )
        self.add(
            "10500",
            "Prepaid Expenses",
            assets,
            "Prepaid Expenses",
            role=Role.PREPAID_EXPENSES,
            net_change=self.money(500, 6_000),
        )
        self.add(
            "10600",
            "Inventory",
            assets,
            "Inventory",
            role=Role.INVENTORY,
            net_change=self.money(5_000, 80_000),
            direct_posting=False,
        )
        equipment = self.money(20_000, 150_000)
        self.add("12100", "Equipment", assets, "Equipment", role=Role.EQUIPMENT, net_change=equipment)
        self.add(
            "12200",
            "Accumulated Depreciation",
            assets,
            "Accumulated Depreciation",
            role=Role.ACCUMULATED_DEPRECIATION,
            net_change=-self.share(equipment, 0.2, 0.6),
        )
        self.add("19999", "TOTAL ASSETS", assets, account_type=Kind.END_TOTAL)

        self.add("20001", "LIABILITIES", liabilities, account_type=Kind.BEGIN_TOTAL)
        self.add(
            "20100",
            "Accounts Payable",
            liabilities,
            "Current Liabilities",
            role=Role.PAYABLES,
            net_change=payables_balance,
            direct_posting=False,
        )
        output_tax = -(quarter_sales * rate).quantize(CENT)
        if locale.tax_style is TaxStyle.VAT:
            percent = f"{locale.tax_rate.normalize():f} %"  # "20 %", as BC names VAT accounts
            input_tax = (quarter_purchases * rate).quantize(CENT)
            # Last quarter's settlement is due unless it has been paid already.
            settlement = Decimal(0) if rng.random() < 0.25 else -self.share(-(output_tax + input_tax), 0.7, 1.3)
            self.add(
                "20300",
                f"Sales VAT {percent}",
                liabilities,
                tax_sub_category,
                role=Role.OUTPUT_TAX,
                net_change=output_tax,
            )
            self.add(
                "20310",
                f"Purchase VAT {percent}",
                liabilities,
                tax_sub_category,
                role=Role.INPUT_TAX,
                net_change=input_tax,
            )
            self.add(
                "20350",
                "VAT Payable",
                liabilities,
                tax_sub_category,
                role=Role.TAX_SETTLEMENT,
                net_change=settlement,
            )
        else:
            self.add(
                "20300",
                "Sales Tax Payable",
                liabilities,
                tax_sub_category,
                role=Role.OUTPUT_TAX,
                net_change=output_tax,
            )
        self.add(
            "20600",
            "Accrued Salaries & Wages",
            liabilities,
            "Payroll Liabilities",
            role=Role.PAYROLL_LIABILITIES,
            net_change=-self.money(2_000, 25_000),
        )
        loan = Decimal(0) if rng.random() < 0.3 else -self.money(10_000, 120_000)
        self.add(
            "20700",
            "Long-term Bank Loan",
            liabilities,
            "Long Term Liabilities",
            role=Role.LOANS,
            net_change=loan,
        )
        self.add("29999", "TOTAL LIABILITIES", liabilities, account_type=Kind.END_TOTAL)

        self.add("30001", "EQUITY", equity, account_type=Kind.BEGIN_TOTAL)
        capital = -(self.money(10_000, 100_000) / 1000).quantize(Decimal(1)) * 1000
        self.add("30100", "Share Capital", equity, "Common Stock", role=Role.SHARE_CAPITAL, net_change=capital)
        self.add("30200", "Retained Earnings", equity, "Retained Earnings", role=Role.RETAINED_EARNINGS)
        self.add("39999", "TOTAL EQUITY", equity, account_type=Kind.END_TOTAL)

        self.add("40000", "INCOME STATEMENT", AccountCategory.BLANK, account_type=Kind.HEADING)
        self.add("40001", "INCOME", income, account_type=Kind.BEGIN_TOTAL)
        self.add(
            "40100",
            "Sales, Products",
            income,
            "Income, Product Sales",
            role=Role.PRODUCT_SALES,
            net_change=-product_sales,
        )
        self.add(
            "40200",
            "Sales, Services",
            income,
            "Income, Services",
            role=Role.SERVICE_SALES,
            net_change=-service_sales,
        )
        self.add(
            "40300",
            "Sales Discounts",
            income,
            "Sales Discounts",
            role=Role.SALES_DISCOUNTS,
            net_change=self.annual(200, 5_000, elapsed),
        )
        self.add(
            "40400",
            "Interest Income",
            income,
            "Income, Interest",
            role=Role.INTEREST_INCOME,
            net_change=-self.annual(20, 1_500, elapsed),
        )
        self.add("49999", "TOTAL INCOME", income, account_type=Kind.END_TOTAL)

        self.add("50001", "COST OF GOODS SOLD", cogs, account_type=Kind.BEGIN_TOTAL)
        self.add(
            "50100",
            "Cost of Materials",
            cogs,
            "Materials",
            role=Role.COST_OF_GOODS_SOLD,
            net_change=self.share(product_sales, 0.45, 0.6),
        )
        self.add(
            "50200",
            "Cost of Labor",
            cogs,
            "Labor",
            role=Role.COST_OF_GOODS_SOLD,
            net_change=self.share(service_sales, 0.3, 0.5),
        )
        self.add("59999", "TOTAL COST OF GOODS SOLD", cogs, account_type=Kind.END_TOTAL)

        self.add("60001", "EXPENSES", expense, account_type=Kind.BEGIN_TOTAL)
        for number, name, sub_category, low, high in (
            ("60100", "Rent", "Rent Expense", 12_000, 60_000),
            ("60200", "Salaries", "Payroll Expense", 30_000, 180_000),
            ("60300", "Advertising", "Advertising Expense", 1_000, 20_000),
            ("60400", "Utilities", "Utilities Expense", 2_000, 15_000),
            ("60500", "Insurance", "Insurance Expense", 1_000, 8_000),
            ("60600", "Bank Fees", "Fees Expense", 100, 2_500),
            ("60700", "Travel", "Travel Expense", 500, 12_000),
        ):
            self.add(
                number,
                name,
                expense,
                sub_category,
                role=Role.EXPENSE,
                net_change=self.annual(low, high, elapsed),
            )
        self.add("69999", "TOTAL EXPENSES", expense, account_type=Kind.END_TOTAL)
        self.add("99999", "NET INCOME", AccountCategory.BLANK, account_type=Kind.TOTAL)

        self._balance_with_retained_earnings()
        self._compute_totals()
        return CompanyBook(
            company=company,
            information=self._information(),
            ledger_setup=GeneralLedgerSetup(
                id=uuid.uuid5(company.id, "generalLedgerSetup"),
                local_currency_code=locale.currency_code,
                local_currency_symbol=locale.currency_symbol,
                shortcut_dimension_codes=("DEPARTMENT", "PROJECT", "", "", "", "", "", ""),
                last_modified=company.created_at + dt.timedelta(minutes=12),
            ),
            accounts=tuple(self.accounts),
            documents=documents,
            business_date=self.business_date,
        )

    def _balance_with_retained_earnings(self) -> None:
        """Retained Earnings takes the difference, so the trial balance sums to zero."""
        total = sum(
            (a.net_change for a in self.accounts if a.account_type is AccountType.POSTING),
            Decimal(0),
        )
        self.accounts = [
            _with_net_change(a, -total) if a.role is AccountRole.RETAINED_EARNINGS else a for a in self.accounts
        ]

    def _compute_totals(self) -> None:
        self.accounts = with_totals(self.accounts)

    def _information(self) -> CompanyInformation:
        company, locale, rng = self.company, self.locale, self.rng
        city, postal_code = rng.choice(locale.cities)
        street = rng.choice(_STREETS[locale.country_code])
        number = rng.randint(1, 180)
        slug = "".join(ch for ch in company.display_name.lower() if ch.isascii() and ch.isalnum())[:24]
        web_domain = f"{slug}.{_WEB_DOMAINS[locale.country_code]}"
        digits = "".join(str(rng.randint(0, 9)) for _ in range(9))
        tax_registration = {
            "GB": f"GB{digits}",
            "DK": f"DK{digits[:8]}",
            "DE": f"DE{digits}",
            "US": f"{digits[:2]}-{digits[2:]}",
        }[locale.country_code]
        phone = {
            "GB": f"+44 20 7946 0{rng.randint(100, 999)}",
            "US": f"+1 206 555 0{rng.randint(100, 199)}",
            "DK": f"+45 33 12 {rng.randint(10, 99)} {rng.randint(10, 99)}",
            "DE": f"+49 89 1234 {rng.randint(1000, 9999)}",
        }[locale.country_code]
        address = f"{number} {street}" if locale.country_code in ("GB", "US") else f"{street} {number}"
        return CompanyInformation(
            id=uuid.uuid5(company.id, "companyInformation"),
            display_name=company.display_name,
            address_line1=address,
            address_line2="",
            city=city,
            state=_US_STATES.get(city, ""),
            country=locale.country_code,
            postal_code=postal_code,
            phone_number=phone,
            fax_number="",
            email=f"accounts@{web_domain}",
            website=f"www.{web_domain}",
            tax_registration_number=tax_registration,
            currency_code=locale.currency_code,
            industry=rng.choice(_INDUSTRIES),
            contact_person=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            last_modified=self.modified_at(),
        )


def with_totals(accounts: list[GLAccount]) -> list[GLAccount]:
    """End-Total accounts sum the posting accounts since their Begin-Total; the Total
    account (NET INCOME) sums the whole income statement, as BC's Totaling ranges do.
    Used when a book is built and again when run-time changes move posting balances."""
    open_totals: list[int] = []
    computed: list[GLAccount] = []
    for position, account in enumerate(accounts):
        if account.account_type is AccountType.BEGIN_TOTAL:
            open_totals.append(position)
        elif account.account_type is AccountType.END_TOTAL:
            start = open_totals.pop()
            account = _with_net_change(account, _posting_sum(accounts[start:position]))
        elif account.account_type is AccountType.TOTAL:
            income_statement = [a for a in accounts if "40000" <= a.number <= "69999"]
            account = _with_net_change(account, _posting_sum(income_statement))
        computed.append(account)
    return computed


def _sales_of(documents: list[Document], line: SalesLine) -> Decimal:
    return sum((d.amount_excluding_tax for d in documents if d.sales_line is line), Decimal(0))


def _posting_sum(accounts: list[GLAccount]) -> Decimal:
    return sum((a.net_change for a in accounts if a.account_type is AccountType.POSTING), Decimal(0))


def _with_net_change(account: GLAccount, net_change: Decimal) -> GLAccount:
    return dataclasses.replace(account, net_change=net_change)
