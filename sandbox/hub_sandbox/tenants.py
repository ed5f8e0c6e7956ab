"""The catalogue of demo client tenants, their environments and companies.

Building the catalogue is cheap (names and ids only), so it is rebuilt on every start
from the seed; a company's ledger is generated lazily by :mod:`hub_sandbox.seed`.

Stability rules:

- tenant ids are ``uuid5(CATALOGUE_NAMESPACE, "tenant/{index}")``: the same on every start
  and for every seed, so links and test fixtures can name them;
- company ids are ``uuid5(CATALOGUE_NAMESPACE, "{tenant id}/{environment}/{index}")``;
- names, countries and amounts come from ``sandbox_seed``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

CATALOGUE_NAMESPACE = uuid.UUID("6f1c5e02-4b7d-5c1e-9a39-2f6c0d1b8a57")

PRODUCTION = "Production"
SANDBOX = "Sandbox"


class TaxStyle(StrEnum):
    """How a country taxes sales, which decides the company's tax accounts."""

    VAT = "VAT"  # output VAT, input VAT and a VAT payable settlement account
    SALES_TAX = "Sales Tax"  # one sales tax payable account


@dataclass(frozen=True)
class Locale:
    """Country conventions of a company: currency, tax and how names and places look."""

    country_code: str
    currency_code: str
    currency_symbol: str
    tax_style: TaxStyle
    tax_rate: Decimal
    # Scales amounts so a Danish company's kroner look like kroner, not pounds.
    amount_scale: Decimal
    cities: tuple[tuple[str, str], ...]  # (city, postal code)
    place_names: tuple[str, ...]
    trades: tuple[str, ...]
    legal_forms: tuple[str, ...]
    tenant_suffix: str  # how the group (the Entra tenant's organisation) is named
    entra_region: str  # tenant_region_scope in the OpenID configuration
    # The language BC's users there work in: its messages' language unless a request asks.
    language: str


LOCALES: dict[str, Locale] = {
    "GB": Locale(
        country_code="GB",
        currency_code="GBP",
        currency_symbol="£",
        tax_style=TaxStyle.VAT,
        tax_rate=Decimal(20),
        amount_scale=Decimal(1),
        cities=(("London", "EC1A 1BB"), ("Leeds", "LS1 4AP"), ("Bristol", "BS1 5TR"),
                ("Manchester", "M2 3WQ"), ("Norwich", "NR2 1TF")),
        place_names=("Harrowgate", "Kingsbridge", "Ashworth", "Pennine", "Thamesview",
                     "Wyvern", "Castlegate", "Redbrook", "Larkhill", "Fenwick"),
        trades=("Joinery", "Print Works", "Coffee Roasters", "Garden Supplies", "Engineering",
                "Textiles", "Bakeries", "Logistics", "Dental Care", "Bicycles"),
        legal_forms=("Ltd", "Ltd", "plc"),
        tenant_suffix="Group",
        entra_region="EU",
        language="en-GB",
    ),
    "US": Locale(
        country_code="US",
        currency_code="USD",
        currency_symbol="$",
        tax_style=TaxStyle.SALES_TAX,
        tax_rate=Decimal("7.25"),
        amount_scale=Decimal("1.3"),
        cities=(("Seattle", "98101"), ("Denver", "80202"), ("Austin", "78701"),
                ("Chicago", "60601"), ("Atlanta", "30303")),
        place_names=("Cedar Ridge", "Lakeshore", "Blue Mesa", "Prairie", "Harbor Point",
                     "Summit", "Redwood", "Magnolia", "Granite", "Silver Creek"),
        trades=("Outdoor Supply", "Construction", "Dental Group", "Brewing", "Landscaping",
                "Auto Parts", "Roofing", "Electric", "Catering", "Pet Care"),
        legal_forms=("Inc.", "LLC", "Corp."),
        tenant_suffix="Holdings",
        entra_region="NA",
        language="en-US",
    ),
    "DK": Locale(
        country_code="DK",
        currency_code="DKK",
        currency_symbol="kr",
        tax_style=TaxStyle.VAT,
        tax_rate=Decimal(25),
        amount_scale=Decimal(8),
        cities=(("København", "1620"), ("Aarhus", "8000"), ("Odense", "5000"),
                ("Aalborg", "9000"), ("Esbjerg", "6700")),
        place_names=("Nordlys", "Fjordvej", "Skovgaard", "Havnens", "Østerby", "Kildebæk",
                     "Bøgely", "Strandlyst", "Egeskov", "Vesterled"),
        trades=("Tømrer", "Kaffe", "Møbler", "Bageri", "Cykler", "El-service", "VVS",
                "Maskiner", "Trykkeri", "Rengøring"),
        legal_forms=("ApS", "ApS", "A/S"),
        tenant_suffix="Gruppen",
        entra_region="EU",
        language="da-DK",
    ),
    "DE": Locale(
        country_code="DE",
        currency_code="EUR",
        currency_symbol="€",
        tax_style=TaxStyle.VAT,
        tax_rate=Decimal(19),
        amount_scale=Decimal("1.2"),
        cities=(("München", "80331"), ("Hamburg", "20095"), ("Köln", "50667"),
                ("Leipzig", "04109"), ("Stuttgart", "70173")),
        place_names=("Rheintal", "Elbufer", "Bergmann", "Lindenhof", "Mühlbach",
                     "Sonnenberg", "Falkenstein", "Eichwald", "Brunnental", "Weißensee"),
        trades=("Maschinenbau", "Bäckerei", "Holzbau", "Elektrotechnik", "Brauerei",
                "Logistik", "Druckerei", "Metallbau", "Gartenbau", "Feinkost"),
        legal_forms=("GmbH", "GmbH", "AG"),
        tenant_suffix="Gruppe",
        entra_region="EU",
        language="de-DE",
    ),
}  # fmt: skip

# The hub's sample client: always tenant 0, always consented, always these names.
SAMPLE_TENANT_NAME = "CRONUS Sample Client"
SAMPLE_TENANT_DOMAIN = "cronus-sample.onmicrosoft.com"
_SAMPLE_COMPANIES = (
    ("CRONUS UK Ltd.", "GB"),
    ("CRONUS USA, Inc.", "US"),
    ("CRONUS Danmark A/S", "DK"),
    ("CRONUS AG", "DE"),
)

# BC limits a company's Name (the key used in web-client links and ODataV4) to 30 chars.
COMPANY_NAME_MAX_LENGTH = 30
# The version BC reports as a company's systemVersion (BC 2026 release wave 2 = 29.x).
SYSTEM_VERSION = "29.1.48016.49120"


@dataclass(frozen=True)
class SandboxCompany:
    id: uuid.UUID
    name: str
    display_name: str
    locale: Locale
    tenant_id: uuid.UUID
    environment: str
    created_at: dt.datetime
    # Seeds the company's ledger in hub_sandbox.seed; derived from the catalogue seed.
    data_seed: str


@dataclass(frozen=True)
class SandboxEnvironment:
    name: str
    type: str  # "Production" or "Sandbox", as in BC's admin center
    companies: tuple[SandboxCompany, ...]

    def company(self, company_id: uuid.UUID) -> SandboxCompany | None:
        return next((c for c in self.companies if c.id == company_id), None)

    def company_named(self, name: str) -> SandboxCompany | None:
        return next((c for c in self.companies if c.name == name), None)


@dataclass(frozen=True)
class SandboxTenant:
    index: int
    id: uuid.UUID
    domain: str
    display_name: str
    locale: Locale
    # Whether the hub's multi-tenant app has been granted admin consent in this tenant when
    # the sandbox starts (the admin API can change it at run time).
    consented: bool
    environments: tuple[SandboxEnvironment, ...]

    def environment(self, name: str) -> SandboxEnvironment | None:
        # BC matches environment names without regard to case.
        folded = name.casefold()
        return next((e for e in self.environments if e.name.casefold() == folded), None)

    @property
    def companies(self) -> Iterator[SandboxCompany]:
        for environment in self.environments:
            yield from environment.companies


class TenantCatalogue:
    """All demo tenants, found by GUID or by ``*.onmicrosoft.com`` domain."""

    def __init__(self, tenants: tuple[SandboxTenant, ...], seed: int) -> None:
        self.tenants = tenants
        self.seed = seed
        self._by_reference: dict[str, SandboxTenant] = {}
        self._companies: dict[uuid.UUID, SandboxCompany] = {}
        for tenant in tenants:
            self._by_reference[str(tenant.id)] = tenant
            self._by_reference[tenant.domain.casefold()] = tenant
            self._companies.update((company.id, company) for company in tenant.companies)

    def find(self, reference: str) -> SandboxTenant | None:
        """A tenant by GUID (any case, with or without braces) or by domain name."""
        text = reference.strip().strip("{}").casefold()
        with contextlib.suppress(ValueError):
            text = str(uuid.UUID(text))
        return self._by_reference.get(text)

    def find_company(self, company_id: uuid.UUID) -> SandboxCompany | None:
        return self._companies.get(company_id)


def tenant_id_for(index: int) -> uuid.UUID:
    """The stable id of demo tenant ``index`` (seed-independent)."""
    return uuid.uuid5(CATALOGUE_NAMESPACE, f"tenant/{index}")


def build_catalogue(*, seed: int, tenant_count: int, companies_per_tenant: int) -> TenantCatalogue:
    """Make the demo tenants. Same arguments, same catalogue, on any machine."""
    if tenant_count < 1:
        raise ValueError("the sandbox needs at least one tenant (the sample client)")
    if companies_per_tenant < 1:
        raise ValueError("every tenant needs at least one company")
    used_domains: set[str] = set()
    tenants = tuple(_build_tenant(seed, index, companies_per_tenant, used_domains) for index in range(tenant_count))
    return TenantCatalogue(tenants, seed)


def _build_tenant(seed: int, index: int, companies_per_tenant: int, used_domains: set[str]) -> SandboxTenant:
    tenant_id = tenant_id_for(index)
    rng = random.Random(f"hub-sandbox/{seed}/tenant/{index}")
    if index == 0:
        locale = LOCALES["GB"]
        display_name = SAMPLE_TENANT_NAME
        domain = SAMPLE_TENANT_DOMAIN
        production_names = [
            (_SAMPLE_COMPANIES[n % len(_SAMPLE_COMPANIES)][0]
             + ("" if n < len(_SAMPLE_COMPANIES) else f" {n + 1}"),
             LOCALES[_SAMPLE_COMPANIES[n % len(_SAMPLE_COMPANIES)][1]])
            for n in range(companies_per_tenant)
        ]  # fmt: skip
    else:
        locale = LOCALES[rng.choice(sorted(LOCALES))]
        place = rng.choice(locale.place_names)
        display_name = f"{place} {locale.tenant_suffix}"
        domain = f"{_ascii_slug(place)}{_ascii_slug(locale.tenant_suffix)}.onmicrosoft.com"
        if domain in used_domains:
            domain = domain.replace(".onmicrosoft.com", f"{index}.onmicrosoft.com")
        trades = rng.sample(locale.trades, k=min(companies_per_tenant, len(locale.trades)))
        production_names = []
        for n in range(companies_per_tenant):
            # Now and then a group has a subsidiary abroad.
            company_locale = locale if rng.random() < 0.8 else LOCALES[rng.choice(sorted(LOCALES))]
            if company_locale is locale:
                trade = trades[n % len(trades)]
                suffix = "" if n < len(trades) else f" {n // len(trades) + 1}"
            else:
                trade, suffix = rng.choice(company_locale.trades), f" {company_locale.country_code}"
            form = rng.choice(company_locale.legal_forms)
            production_names.append((f"{place} {trade}{suffix} {form}", company_locale))
    used_domains.add(domain)

    def company(environment: str, n: int, display: str, company_locale: Locale) -> SandboxCompany:
        company_id = uuid.uuid5(CATALOGUE_NAMESPACE, f"{tenant_id}/{environment}/{n}")
        created = dt.datetime(2021, 1, 4, 9, 0, tzinfo=dt.UTC) + dt.timedelta(
            days=rng.randint(0, 4 * 365), seconds=rng.randint(0, 8 * 3600)
        )
        return SandboxCompany(
            id=company_id,
            name=display[:COMPANY_NAME_MAX_LENGTH].rstrip(),
            display_name=display,
            locale=company_locale,
            tenant_id=tenant_id,
            environment=environment,
            created_at=created,
            data_seed=f"hub-sandbox/{seed}/company/{company_id}",
        )

    environments = [
        SandboxEnvironment(
            name=PRODUCTION,
            type=PRODUCTION,
            companies=tuple(
                company(PRODUCTION, n, display, company_locale)
                for n, (display, company_locale) in enumerate(production_names)
            ),
        )
    ]
    # Every other tenant also keeps a sandbox environment holding a copy of its first
    # company (same name, its own id), as admins do to try updates.
    if index % 2 == 0:
        first_name, first_locale = production_names[0]
        environments.append(
            SandboxEnvironment(
                name=SANDBOX,
                type=SANDBOX,
                companies=(company(SANDBOX, 0, first_name, first_locale),),
            )
        )
    return SandboxTenant(
        index=index,
        id=tenant_id,
        domain=domain,
        display_name=display_name,
        locale=locale,
        # Every third generated tenant has not consented to the hub's app, so the
        # "consent missing" path is always there to demo.
        consented=index == 0 or index % 3 != 2,
        environments=tuple(environments),
    )


def _ascii_slug(text: str) -> str:
    """'Østerby Gruppen' -> 'osterbygruppen' (Entra domains are ASCII)."""
    replaced = text.replace("Ø", "O").replace("ø", "o").replace("Æ", "Ae").replace("æ", "ae")
    replaced = replaced.replace("ß", "ss")
    ascii_text = unicodedata.normalize("NFKD", replaced).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())
