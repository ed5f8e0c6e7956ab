"""Customers, vendors and their documents: the part of a company's book that API v2.0
serves as customers, vendors, salesInvoices, salesCreditMemos, purchaseInvoices, salesOrders
and salesQuotes.

The book builder (:mod:`hub_sandbox.seed`) asks :class:`DocumentBuilder` for the documents
first, then derives the G/L accounts from them, so every figure agrees with the documents
it sums:

- receivables account = sum of ``remaining_amount`` of posted sales invoices with status Open;
- payables account = minus the sum of ``amount_including_tax`` of posted purchase invoices
  with status Open (the purchase API has no remaining amount, so purchase invoices are
  never partly paid in the sandbox);
- product and service sales accounts = ``amount_excluding_tax`` of the posted sales invoices
  of the fiscal year (posting date from 1 January to the business date), less that of the
  posted sales credit memos of the year. The seeded credit memos are partial credits of
  paid invoices, refunded when posted (status Paid), so no open item and no receivable
  changes with them.

All documents are in local currency (``currencyCode`` "" as BC writes LCY). Dates are
relative to the business date; the open items' amounts are not, so balances stay put
while due dates move with the calendar.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from hub_sandbox.tenants import Locale, SandboxCompany

CENT = Decimal("0.01")


class DocumentKind(StrEnum):
    SALES_INVOICE = "salesInvoice"
    SALES_CREDIT_MEMO = "salesCreditMemo"
    PURCHASE_INVOICE = "purchaseInvoice"
    SALES_ORDER = "salesOrder"
    SALES_QUOTE = "salesQuote"


class InvoiceStatus(StrEnum):
    """BC's enum invoiceEntityAggregateStatus, in BC's order, as the API writes it."""

    BLANK = "_x0020_"
    DRAFT = "Draft"
    IN_REVIEW = "In_x0020_Review"
    OPEN = "Open"  # posted, not closed
    PAID = "Paid"  # posted, closed
    CANCELED = "Canceled"
    CORRECTIVE = "Corrective"


class CreditMemoStatus(StrEnum):
    """BC's enum salesCrMemoEntityBufferStatus, as the API writes it."""

    DRAFT = "Draft"
    IN_REVIEW = "In_x0020_Review"
    OPEN = "Open"  # posted, not applied in full
    CANCELED = "Canceled"
    CORRECTIVE = "Corrective"
    PAID = "Paid"  # posted, closed


class SalesOrderStatus(StrEnum):
    """BC's enum salesOrderEntityBufferStatus (Open = released)."""

    DRAFT = "Draft"
    IN_REVIEW = "In_x0020_Review"
    OPEN = "Open"


class SalesQuoteStatus(StrEnum):
    """BC's enum salesQuoteEntityBufferStatus; the AL value of Expired has a trailing space."""

    DRAFT = "Draft"
    SENT = "Sent"
    ACCEPTED = "Accepted"
    EXPIRED = "Expired_x0020_"


class CustomerBlocked(StrEnum):
    NONE = "_x0020_"
    SHIP = "Ship"
    INVOICE = "Invoice"
    ALL = "All"


class VendorBlocked(StrEnum):
    NONE = "_x0020_"
    PAYMENT = "Payment"
    ALL = "All"


class SalesLine(StrEnum):
    """Which income account a sales document posts to (not a BC field)."""

    PRODUCTS = "products"
    SERVICES = "services"


@dataclass(frozen=True)
class Address:
    line1: str
    line2: str
    city: str
    state: str
    country: str
    postal_code: str


@dataclass(frozen=True)
class Party:
    """A customer or a vendor (the fields the API shows for both)."""

    id: uuid.UUID
    number: str
    display_name: str
    address: Address
    phone_number: str
    email: str
    website: str
    tax_registration_number: str
    payment_terms_days: int
    # customerBlocked or vendorBlocked member, as the API writes it.
    blocked: str
    credit_limit: Decimal
    salesperson_code: str
    contact: str
    last_modified: dt.datetime


@dataclass(frozen=True)
class Document:
    """One sales or purchase document, posted or not. Amounts in LCY, two decimals."""

    kind: DocumentKind
    id: uuid.UUID
    number: str
    party: Party
    document_date: dt.date  # invoiceDate / orderDate / documentDate
    posting_date: dt.date
    due_date: dt.date
    amount_excluding_tax: Decimal
    tax_amount: Decimal
    # What is still owed: for posted Open sales invoices the unpaid part (some are partly
    # paid), 0 when Paid, the total for unposted documents (as BC's API page computes it).
    remaining_amount: Decimal
    status: str  # InvoiceStatus / SalesOrderStatus / SalesQuoteStatus member
    posted: bool
    closed_on: dt.date | None  # when a posted invoice was paid in full
    sales_line: SalesLine
    external_number: str
    last_modified: dt.datetime

    @property
    def amount_including_tax(self) -> Decimal:
        return self.amount_excluding_tax + self.tax_amount

    @property
    def is_open_posted_invoice(self) -> bool:
        """Posted and not paid: Open, or a sales invoice's Corrective (BC keeps a corrective
        invoice at that status, paid or not) with something left to pay."""
        if not self.posted:
            return False
        if self.status == InvoiceStatus.CORRECTIVE:
            return self.kind is DocumentKind.SALES_INVOICE and self.remaining_amount != 0
        return self.status == InvoiceStatus.OPEN


@dataclass(frozen=True)
class OpenItem:
    """An open invoice in a customer or vendor ledger: what is still owed, in LCY."""

    amount: Decimal  # including tax, positive
    due_in_days: int  # relative to the business date; negative means overdue


@dataclass(frozen=True)
class CompanyDocuments:
    customers: tuple[Party, ...]
    vendors: tuple[Party, ...]
    sales_invoices: tuple[Document, ...]
    purchase_invoices: tuple[Document, ...]
    sales_orders: tuple[Document, ...]
    sales_quotes: tuple[Document, ...]
    open_receivables: tuple[OpenItem, ...]
    open_payables: tuple[OpenItem, ...]
    sales_credit_memos: tuple[Document, ...] = ()


# ---------------------------------------------------------------------------------------

_STREET_WORDS = {
    "GB": ("High Street", "Station Road", "Church Lane", "Mill Road", "Victoria Street", "Park Road"),
    "US": ("Main Street", "Oak Avenue", "Pine Street", "Market Street", "Lake Drive", "Elm Street"),
    "DK": ("Strandvejen", "Vestergade", "Nørregade", "Søndergade", "Havnegade", "Algade"),
    "DE": ("Hauptstraße", "Bahnhofstraße", "Gartenstraße", "Schulstraße", "Lindenallee", "Ringstraße"),
}
_US_STATES = {"Seattle": "WA", "Denver": "CO", "Austin": "TX", "Chicago": "IL", "Atlanta": "GA"}
_FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henrik", "Ida", "Jonas")
_LAST_NAMES = ("Jensen", "Smith", "Müller", "Brown", "Nielsen", "Schmidt", "Taylor", "Larsen")
_SALESPEOPLE = ("JO", "PS", "BC", "HR")
BLANK_GUID = uuid.UUID(int=0)
_LIVE_QUOTE_STATUSES = (
    SalesQuoteStatus.DRAFT,
    SalesQuoteStatus.SENT,
    SalesQuoteStatus.SENT,
    SalesQuoteStatus.ACCEPTED,
)


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum())[:20]


class DocumentBuilder:
    """Makes the parties and documents of one company for one business date.

    ``rng`` draws what does not depend on the date (parties, open items, unposted
    documents); ``history_rng`` draws the paid history of the fiscal year so far, which
    grows with the date.
    """

    def __init__(
        self,
        company: SandboxCompany,
        rng: random.Random,
        business_date: dt.date,
        scale: Decimal,
    ) -> None:
        self.company = company
        self.locale: Locale = company.locale
        self.rng = rng
        self.history_rng = random.Random(f"{company.data_seed}/history/{business_date.isoformat()}")
        self.today = business_date
        self.scale = scale
        self.tax_rate = company.locale.tax_rate / 100

    # -- parties ------------------------------------------------------------------------

    def _party_names(self, count: int, used: set[str]) -> list[str]:
        locale, rng = self.locale, self.rng
        names: list[str] = []
        while len(names) < count:
            place, trade = rng.choice(locale.place_names), rng.choice(locale.trades)
            name = f"{place} {trade} {rng.choice(locale.legal_forms)}"
            if name not in used and not name.startswith(self.company.display_name.split(" ")[0] + " "):
                used.add(name)
                names.append(name)
        return names

    def _party(self, kind: str, number: str, name: str, blocked: str, terms: int) -> Party:
        locale, rng = self.locale, self.rng
        city, postal_code = rng.choice(locale.cities)
        street = rng.choice(_STREET_WORDS[locale.country_code])
        house = rng.randint(1, 220)
        line1 = f"{house} {street}" if locale.country_code in ("GB", "US") else f"{street} {house}"
        domain = f"{_slug(name)}.example"
        digits = "".join(str(rng.randint(0, 9)) for _ in range(9))
        return Party(
            id=uuid.uuid5(self.company.id, f"{kind}/{number}"),
            number=number,
            display_name=name,
            address=Address(line1, "", city, _US_STATES.get(city, ""), locale.country_code, postal_code),
            phone_number=f"+{rng.randint(1, 49)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            email=f"{'accounts' if kind == 'customer' else 'billing'}@{domain}",
            website=f"www.{domain}",
            tax_registration_number=f"{locale.country_code}{digits}",
            payment_terms_days=terms,
            blocked=blocked,
            credit_limit=self.money(0, 20) * 1000 if rng.random() < 0.6 else Decimal(0),
            salesperson_code=rng.choice(_SALESPEOPLE) if kind == "customer" else "",
            contact=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            last_modified=self.company.created_at + dt.timedelta(days=rng.randint(1, 900)),
        )

    # -- amounts ------------------------------------------------------------------------

    def money(self, low: int, high: int, rng: random.Random | None = None) -> Decimal:
        """A random amount between low and high (before scaling), to the cent."""
        cents = (rng or self.rng).randint(low * 100, high * 100)
        return (Decimal(cents) / 100 * self.scale).quantize(CENT, ROUND_HALF_UP)

    def _split(self, including_tax: Decimal) -> tuple[Decimal, Decimal]:
        """An amount including tax split into (excluding tax, tax), to the cent."""
        excluding = (including_tax / (1 + self.tax_rate)).quantize(CENT, ROUND_HALF_UP)
        return excluding, including_tax - excluding

    def _with_tax(self, excluding_tax: Decimal) -> tuple[Decimal, Decimal]:
        return excluding_tax, (excluding_tax * self.tax_rate).quantize(CENT, ROUND_HALF_UP)

    def _open_items(self, count: int, low: int, high: int, overdue_share: float, overdue_days: int) -> list[OpenItem]:
        rng = self.rng
        items = []
        for _ in range(count):
            due = -rng.randint(1, overdue_days) if rng.random() < overdue_share else rng.randint(0, 45)
            items.append(OpenItem(self.money(low, high), due))
        # Every company shows something in each figure the hub computes.
        items[0] = OpenItem(items[0].amount, -rng.randint(3, 40))  # overdue
        items[1] = OpenItem(items[1].amount, rng.randint(1, 7))  # due within the next week
        items[2] = OpenItem(items[2].amount, 30)  # posted today on 30 days' terms
        return items

    def _posting_date_for(self, due_in_days: int) -> dt.date:
        # 30 days' terms, 60 when that would put the posting date in the future.
        terms = 30 if due_in_days <= 30 else 60
        return self.today + dt.timedelta(days=due_in_days - terms)

    # -- the documents ------------------------------------------------------------------

    def build(self) -> CompanyDocuments:
        rng = self.rng
        used_names = {self.company.display_name}
        customer_count, vendor_count = rng.randint(8, 18), rng.randint(5, 12)
        customers = []
        for n, name in enumerate(self._party_names(customer_count, used_names)):
            blocked = CustomerBlocked.NONE
            if n == customer_count - 1 and rng.random() < 0.3:
                blocked = rng.choice((CustomerBlocked.INVOICE, CustomerBlocked.ALL))
            customers.append(self._party("customer", f"C{10000 + n * 10}", name, blocked, rng.choice((14, 30, 30, 60))))
        vendors = []
        for n, name in enumerate(self._party_names(vendor_count, used_names)):
            on_hold = n == vendor_count - 1 and rng.random() < 0.3
            vendor_blocked = VendorBlocked.PAYMENT if on_hold else VendorBlocked.NONE
            terms = rng.choice((14, 30, 30))
            vendors.append(self._party("vendor", f"V{20000 + n * 10}", name, vendor_blocked, terms))
        active_customers = [c for c in customers if c.blocked == CustomerBlocked.NONE]

        receivables = self._open_items(rng.randint(6, 16), 150, 9000, 0.4, 90)
        payables = self._open_items(rng.randint(4, 12), 80, 6000, 0.3, 60)

        # Posted sales invoices: the open items, then the paid history of the fiscal year.
        # Now and then the first open one, and one paid, is a corrective invoice (posted when
        # a posted credit memo was cancelled), whose status stays Corrective paid or not;
        # drawn from a generator of their own, so every other document is as without them.
        corrective_rng = random.Random(f"{self.company.data_seed}/corrective")
        open_corrective, paid_corrective = corrective_rng.random() < 0.5, corrective_rng.random() < 0.5
        drafts: list[tuple[dt.date, Document]] = []
        for index, item in enumerate(receivables):
            posting = self._posting_date_for(item.due_in_days)
            customer = rng.choice(customers)
            # Now and then a customer has paid part of an invoice: remaining < total.
            total = item.amount
            if rng.random() < 0.15:
                total = item.amount + self.money(50, 1500)
            excluding, tax = self._split(total)
            drafts.append(
                (
                    posting,
                    self._document(
                        DocumentKind.SALES_INVOICE, f"open/{index}", customer, posting,
                        self.today + dt.timedelta(days=item.due_in_days),
                        excluding, tax, item.amount,
                        InvoiceStatus.CORRECTIVE if open_corrective and index == 0 else InvoiceStatus.OPEN,
                        posted=True,
                    ),
                )
            )  # fmt: skip
        paid_history = self._paid_sales_history(active_customers)
        if paid_corrective and paid_history:
            paid_history[0] = dataclasses.replace(paid_history[0], status=InvoiceStatus.CORRECTIVE)
        drafts.extend((d.posting_date, d) for d in paid_history)
        sales_posted = self._numbered(drafts, "PSI", 103001)
        credit_memos = self._numbered([(d.posting_date, d) for d in self._credit_memos(paid_history)], "PSCM", 104001)

        unposted_sales = []
        for index in range(rng.randint(1, 5)):
            date = self.today - dt.timedelta(days=rng.randint(0, 10))
            customer = rng.choice(active_customers)
            excluding, tax = self._with_tax(self.money(100, 7000))
            status = rng.choice((InvoiceStatus.DRAFT, InvoiceStatus.DRAFT, InvoiceStatus.IN_REVIEW))
            unposted_sales.append(
                self._document(
                    DocumentKind.SALES_INVOICE, f"draft/{index}", customer, date,
                    date + dt.timedelta(days=customer.payment_terms_days), excluding, tax,
                    excluding + tax, status, posted=False, number=f"SI{1001 + index}",
                )
            )  # fmt: skip

        purchase_drafts: list[tuple[dt.date, Document]] = []
        for index, item in enumerate(payables):
            posting = self._posting_date_for(item.due_in_days)
            excluding, tax = self._split(item.amount)
            purchase_drafts.append(
                (
                    posting,
                    self._document(
                        DocumentKind.PURCHASE_INVOICE, f"open/{index}", rng.choice(vendors), posting,
                        self.today + dt.timedelta(days=item.due_in_days), excluding, tax,
                        item.amount, InvoiceStatus.OPEN, posted=True,
                    ),
                )
            )  # fmt: skip
        for index in range(rng.randint(4, 12)):
            posting = self.today - dt.timedelta(days=rng.randint(20, 120))
            vendor = rng.choice(vendors)
            excluding, tax = self._with_tax(self.money(60, 5000))
            closed = min(self.today, posting + dt.timedelta(days=rng.randint(5, vendor.payment_terms_days)))
            purchase_drafts.append(
                (
                    posting,
                    self._document(
                        DocumentKind.PURCHASE_INVOICE, f"paid/{index}", vendor, posting,
                        posting + dt.timedelta(days=vendor.payment_terms_days), excluding, tax,
                        Decimal(0), InvoiceStatus.PAID, posted=True, closed_on=closed,
                    ),
                )
            )  # fmt: skip
        purchases_posted = self._numbered(purchase_drafts, "PPI", 108001)
        unposted_purchases = []
        for index in range(rng.randint(1, 4)):
            date = self.today - dt.timedelta(days=rng.randint(0, 14))
            vendor = rng.choice(vendors)
            excluding, tax = self._with_tax(self.money(60, 4000))
            unposted_purchases.append(
                self._document(
                    DocumentKind.PURCHASE_INVOICE, f"draft/{index}", vendor, date,
                    date + dt.timedelta(days=vendor.payment_terms_days), excluding, tax,
                    excluding + tax, InvoiceStatus.DRAFT, posted=False, number=f"PI{1001 + index}",
                )
            )  # fmt: skip

        orders = []
        for index in range(rng.randint(2, 8)):
            date = self.today - dt.timedelta(days=rng.randint(0, 30))
            excluding, tax = self._with_tax(self.money(200, 12000))
            order_status = rng.choice(tuple(SalesOrderStatus))
            orders.append(
                self._document(
                    DocumentKind.SALES_ORDER, f"order/{index}", rng.choice(active_customers), date,
                    date + dt.timedelta(days=rng.randint(3, 21)), excluding, tax, excluding + tax,
                    order_status, posted=False, number=f"SO{101001 + index}",
                )
            )  # fmt: skip
        quotes = []
        for index in range(rng.randint(1, 6)):
            date = self.today - dt.timedelta(days=rng.randint(0, 40))
            excluding, tax = self._with_tax(self.money(200, 15000))
            valid_until = date + dt.timedelta(days=30)
            quote_status = SalesQuoteStatus.EXPIRED
            if valid_until >= self.today:
                quote_status = rng.choice(_LIVE_QUOTE_STATUSES)
            quotes.append(
                self._document(
                    DocumentKind.SALES_QUOTE, f"quote/{index}", rng.choice(active_customers), date,
                    valid_until, excluding, tax, excluding + tax, quote_status, posted=False,
                    number=f"SQ{1001 + index}",
                )
            )  # fmt: skip

        return CompanyDocuments(
            customers=tuple(customers),
            vendors=tuple(vendors),
            sales_invoices=tuple(sorted(sales_posted + unposted_sales, key=lambda d: d.number)),
            purchase_invoices=tuple(sorted(purchases_posted + unposted_purchases, key=lambda d: d.number)),
            sales_orders=tuple(orders),
            sales_quotes=tuple(quotes),
            open_receivables=tuple(receivables),
            open_payables=tuple(payables),
            sales_credit_memos=tuple(credit_memos),
        )

    def _credit_memos(self, paid_invoices: list[Document]) -> list[Document]:
        """Now and then a paid invoice is partly credited a few days after it was posted
        (a return, a price correction) after it was paid: a posted credit memo, refunded at
        once (Paid). Drawn from a generator of their own, so every other document is as
        without them (the sales accounts, and what derives from them, are net of them)."""
        rng = random.Random(f"{self.company.data_seed}/credit-memos/{self.today.isoformat()}")
        memos = []
        for invoice in paid_invoices:
            if rng.random() >= 0.06:
                continue
            paid = invoice.closed_on or invoice.posting_date
            posted = min(self.today, paid + dt.timedelta(days=rng.randint(0, 10)))
            share = Decimal(rng.randint(10, 50)) / 100
            excluding, tax = self._with_tax((invoice.amount_excluding_tax * share).quantize(CENT, ROUND_HALF_UP))
            memo = self._document(
                DocumentKind.SALES_CREDIT_MEMO, f"paid/{invoice.id}", invoice.party, posted, posted,
                excluding, tax, Decimal(0), CreditMemoStatus.PAID, posted=True, closed_on=posted, rng=rng,
            )  # fmt: skip
            memos.append(dataclasses.replace(memo, sales_line=invoice.sales_line))
        return memos

    def _paid_sales_history(self, customers: list[Party]) -> list[Document]:
        """Paid invoices from 1 January to the day before the business date: on about a
        third of the weekdays one invoice, paid some days later (never after today)."""
        rng = self.history_rng
        first = dt.date(self.today.year, 1, 1)
        history = []
        day = first
        while day < self.today:
            if day.weekday() < 5 and rng.random() < 0.35:
                customer = rng.choice(customers)
                excluding, tax = self._with_tax(self.money(120, 7500, rng))
                due = day + dt.timedelta(days=customer.payment_terms_days)
                closed = min(self.today, day + dt.timedelta(days=rng.randint(3, customer.payment_terms_days + 20)))
                history.append(
                    self._document(
                        DocumentKind.SALES_INVOICE, f"paid/{day.isoformat()}", customer, day, due,
                        excluding, tax, Decimal(0), InvoiceStatus.PAID, posted=True, closed_on=closed,
                        rng=rng,
                    )
                )  # fmt: skip
            day += dt.timedelta(days=1)
        return history

    def _numbered(self, drafts: list[tuple[dt.date, Document]], prefix: str, first: int) -> list[Document]:
        """Posted documents get numbers in posting-date order, as a number series does."""
        ordered = sorted(drafts, key=lambda pair: (pair[0], pair[1].id.int))
        return [_renumber(document, f"{prefix}{first + n}") for n, (_, document) in enumerate(ordered)]

    def _document(
        self,
        kind: DocumentKind,
        key: str,
        party: Party,
        document_date: dt.date,
        due_date: dt.date,
        excluding_tax: Decimal,
        tax: Decimal,
        remaining: Decimal,
        status: str,
        *,
        posted: bool,
        closed_on: dt.date | None = None,
        number: str = "",
        rng: random.Random | None = None,
    ) -> Document:
        rng = rng or self.rng
        stamp = dt.datetime.combine(closed_on or document_date, dt.time(8, 0), dt.UTC)
        return Document(
            kind=kind,
            id=uuid.uuid5(self.company.id, f"{kind.value}/{key}"),
            number=number,
            party=party,
            document_date=document_date,
            posting_date=document_date,
            due_date=due_date,
            amount_excluding_tax=excluding_tax,
            tax_amount=tax,
            remaining_amount=remaining,
            status=status,
            posted=posted,
            closed_on=closed_on,
            sales_line=SalesLine.PRODUCTS if rng.random() < 0.8 else SalesLine.SERVICES,
            external_number=f"PO-{rng.randint(1000, 99999)}" if rng.random() < 0.5 else "",
            last_modified=stamp + dt.timedelta(seconds=rng.randint(0, 30000)),
        )


def _renumber(document: Document, number: str) -> Document:
    return dataclasses.replace(document, number=number)
