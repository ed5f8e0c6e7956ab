"""The API v2.0 entities the sandbox serves: their properties (real BC names and types)
and how a company's seeded book becomes records.

Adding an entity (customers, salesInvoices... in stage 2) means: one :class:`EntityType`,
one function from book to records, one entry in :data:`COMPANY_ENTITY_SETS`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hub_sandbox.odata import EdmType, EntityType, Property, Record, Value
from hub_sandbox.seed import AccountCategory, AccountType, CompanyBook, company_book
from hub_sandbox.tenants import SYSTEM_VERSION, SandboxCompany

# Short names keep the property tables below readable.
S, G, D = EdmType.STRING, EdmType.GUID, EdmType.DECIMAL
BOOL, DATE, DATETIME, INT64 = EdmType.BOOLEAN, EdmType.DATE, EdmType.DATETIME, EdmType.INT64

# BC writes an unset date as 0001-01-01.
BLANK_DATE = dt.date(1, 1, 1)
# The "user" that created demo companies: BC's system user id.
SYSTEM_USER_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def _props(*pairs: tuple[str, EdmType]) -> tuple[Property, ...]:
    return tuple(Property(name, edm_type) for name, edm_type in pairs)


COMPANY = EntityType(
    name="company",
    entity_set="companies",
    properties=_props(
        ("id", G), ("systemVersion", S), ("timestamp", INT64), ("name", S), ("displayName", S),
        ("businessProfileId", S), ("systemCreatedAt", DATETIME), ("systemCreatedBy", G),
        ("systemModifiedAt", DATETIME), ("systemModifiedBy", G),
    ),
)  # fmt: skip

COMPANY_INFORMATION = EntityType(
    name="companyInformation",
    entity_set="companyInformation",
    properties=_props(
        ("id", G), ("displayName", S), ("addressLine1", S), ("addressLine2", S), ("city", S),
        ("state", S), ("country", S), ("postalCode", S), ("phoneNumber", S), ("faxNumber", S),
        ("email", S), ("website", S), ("taxRegistrationNumber", S), ("currencyCode", S),
        ("currentFiscalYearStartDate", DATE), ("industry", S),
        ("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

GENERAL_LEDGER_SETUP = EntityType(
    name="generalLedgerSetup",
    entity_set="generalLedgerSetup",
    properties=_props(
        ("id", G), ("allowPostingFrom", DATE), ("allowPostingTo", DATE),
        ("additionalReportingCurrency", S), ("localCurrencyCode", S),
        ("localCurrencySymbol", S), ("lastModifiedDateTime", DATETIME),
        ("allowQueryFromConsolidation", BOOL),
        *((f"shortcutDimension{n}Code", S) for n in range(1, 9)),
    ),
)  # fmt: skip

ACCOUNT = EntityType(
    name="account",
    entity_set="accounts",
    properties=(
        Property("id", G),
        Property("number", S),
        Property("displayName", S),
        Property("category", EdmType.ENUM, "glAccountCategory", tuple(AccountCategory)),
        Property("subCategory", S),
        Property("blocked", BOOL),
        Property("accountType", EdmType.ENUM, "glAccountType", tuple(AccountType)),
        Property("directPosting", BOOL),
        Property("netChange", D),
        Property("consolidationTranslationMethod", S),
        Property("consolidationDebitAccount", S),
        Property("consolidationCreditAccount", S),
        Property("excludeFromConsolidation", BOOL),
        Property("lastModifiedDateTime", DATETIME),
    ),
)


def company_record(company: SandboxCompany) -> Record:
    created = company.created_at
    return {
        "id": company.id,
        "systemVersion": SYSTEM_VERSION,
        # A row version: grows with every change, like SQL's timestamp column BC exposes.
        "timestamp": int(created.timestamp()) % 100_000 + 1_000,
        "name": company.name,
        "displayName": company.display_name,
        "businessProfileId": "",
        "systemCreatedAt": created,
        "systemCreatedBy": SYSTEM_USER_ID,
        "systemModifiedAt": created,
        "systemModifiedBy": SYSTEM_USER_ID,
    }


def company_information_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    info = book.information
    return [
        {
            "id": info.id,
            "displayName": info.display_name,
            "addressLine1": info.address_line1,
            "addressLine2": info.address_line2,
            "city": info.city,
            "state": info.state,
            "country": info.country,
            "postalCode": info.postal_code,
            "phoneNumber": info.phone_number,
            "faxNumber": info.fax_number,
            "email": info.email,
            "website": info.website,
            "taxRegistrationNumber": info.tax_registration_number,
            "currencyCode": info.currency_code,
            # Demo companies keep calendar fiscal years.
            "currentFiscalYearStartDate": dt.date(business_date.year, 1, 1),
            "industry": info.industry,
            "lastModifiedDateTime": info.last_modified,
        }
    ]


def general_ledger_setup_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    setup = book.ledger_setup
    record: dict[str, Value] = {
        "id": setup.id,
        "allowPostingFrom": BLANK_DATE,
        "allowPostingTo": BLANK_DATE,
        "additionalReportingCurrency": "",
        "localCurrencyCode": setup.local_currency_code,
        "localCurrencySymbol": setup.local_currency_symbol,
        "lastModifiedDateTime": setup.last_modified,
        "allowQueryFromConsolidation": False,
    }
    for n, code in enumerate(setup.shortcut_dimension_codes, start=1):
        record[f"shortcutDimension{n}Code"] = code
    return [record]


def account_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    return [
        {
            "id": account.id,
            "number": account.number,
            "displayName": account.display_name,
            "category": account.category.value,
            "subCategory": account.sub_category,
            "blocked": account.blocked,
            "accountType": account.account_type.value,
            "directPosting": account.direct_posting,
            "netChange": account.net_change,
            "consolidationTranslationMethod": "Average Rate (Manual)",
            "consolidationDebitAccount": "",
            "consolidationCreditAccount": "",
            "excludeFromConsolidation": False,
            "lastModifiedDateTime": account.last_modified,
        }
        for account in book.accounts
    ]


@dataclass(frozen=True)
class CompanyEntitySet:
    entity: EntityType
    records: Callable[[CompanyBook, dt.date], list[Record]]


# Entity sets under companies({id}), by their URL name.
COMPANY_ENTITY_SETS: dict[str, CompanyEntitySet] = {
    entity_set.entity.entity_set: entity_set
    for entity_set in (
        CompanyEntitySet(COMPANY_INFORMATION, company_information_records),
        CompanyEntitySet(GENERAL_LEDGER_SETUP, general_ledger_setup_records),
        CompanyEntitySet(ACCOUNT, account_records),
    )
}


def company_entity_records(
    entity_set: CompanyEntitySet, company: SandboxCompany, business_date: dt.date
) -> list[Record]:
    return entity_set.records(company_book(company), business_date)


def etag_for(record: Record) -> str:
    """A weak ETag that changes whenever the record does. BC's are opaque base64 of a row
    version; clients must only echo them back in If-Match."""
    digest = hashlib.sha256(repr(sorted((k, str(v)) for k, v in record.items())).encode())
    row_version = int.from_bytes(digest.digest()[:7], "big")
    token = base64.b64encode(f"'{len(str(row_version)) + 3};{row_version}1;00;'".encode())
    return f'W/"{token.decode()}"'
