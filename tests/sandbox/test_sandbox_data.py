"""Catalogue and seeded books: deterministic, balanced and shaped for the hub's figures."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hub_sandbox.seed import (
    TAX_ROLES,
    AccountCategory,
    AccountRole,
    AccountType,
    CompanyBook,
    build_book,
    company_book,
)
from hub_sandbox.tenants import (
    SAMPLE_TENANT_DOMAIN,
    TenantCatalogue,
    build_catalogue,
    tenant_id_for,
)

BUSINESS_DATE = dt.date(2026, 5, 20)


def catalogue(seed: int = 2026, tenants: int = 5, companies: int = 3) -> TenantCatalogue:
    return build_catalogue(seed=seed, tenant_count=tenants, companies_per_tenant=companies)


def fresh_book(catalogue_: TenantCatalogue, tenant_index: int = 0) -> CompanyBook:
    """Build a book without the process-wide cache, to prove rebuilding gives the same."""
    company = catalogue_.tenants[tenant_index].environments[0].companies[0]
    return build_book(company, BUSINESS_DATE)


def test_same_seed_same_catalogue_and_data() -> None:
    first, second = catalogue(), catalogue()

    assert first.tenants == second.tenants
    for index in range(len(first.tenants)):
        assert fresh_book(first, index) == fresh_book(second, index)


def test_tenant_ids_are_stable_and_names_follow_the_seed() -> None:
    one, other = catalogue(seed=1), catalogue(seed=2)

    assert [t.id for t in one.tenants] == [tenant_id_for(i) for i in range(5)]
    assert [t.id for t in one.tenants] == [t.id for t in other.tenants]
    assert [t.domain for t in one.tenants[1:]] != [t.domain for t in other.tenants[1:]]
    assert one.tenants[0].domain == SAMPLE_TENANT_DOMAIN
    assert str(tenant_id_for(0)) == "a4d49e77-6985-5aa5-a4db-60d216e64896"


def test_tenants_found_by_guid_or_domain_and_consent_pattern() -> None:
    built = catalogue(tenants=7)
    sample = built.tenants[0]

    assert built.find(str(sample.id).upper()) is sample
    assert built.find(f"{{{sample.id}}}") is sample
    assert built.find(SAMPLE_TENANT_DOMAIN.upper()) is sample
    assert built.find("nobody.onmicrosoft.com") is None
    assert [t.consented for t in built.tenants] == [True, True, False, True, True, False, True]
    assert len({t.domain for t in built.tenants}) == 7


def test_company_names_fit_bc_and_ids_are_unique() -> None:
    built = catalogue(tenants=20, companies=4)
    companies = [c for t in built.tenants for c in t.companies]

    assert all(len(c.name) <= 30 for c in companies)
    assert len({c.id for c in companies}) == len(companies)
    assert {c.locale.currency_code for c in companies} == {"GBP", "USD", "DKK", "EUR"}
    assert built.find_company(companies[-1].id) is companies[-1]


def test_books_balance_and_agree_with_their_open_items() -> None:
    built = catalogue(tenants=12, companies=3)
    for tenant in built.tenants:
        for company in tenant.companies:
            book = company_book(company, BUSINESS_DATE)
            posting = [a for a in book.accounts if a.account_type is AccountType.POSTING]
            assert sum((a.net_change for a in posting), Decimal(0)) == 0
            assert book.balance_of(AccountRole.RECEIVABLES) == sum(
                (item.amount for item in book.open_receivables), Decimal(0)
            )
            assert book.balance_of(AccountRole.PAYABLES) == -sum(
                (item.amount for item in book.open_payables), Decimal(0)
            )
            assert any(item.due_in_days < 0 for item in book.open_receivables)
            assert any(1 <= item.due_in_days <= 7 for item in book.open_payables)
            assert book.ytd_sales_excluding_tax > 0


def test_chart_of_accounts_shape() -> None:
    book = fresh_book(catalogue())
    cash = book.accounts_with_role(AccountRole.CASH)

    assert len(cash) >= 3
    assert all(a.category is AccountCategory.ASSETS and a.sub_category == "Cash" for a in cash)
    # Totals with the Cash subcategory exist too: a client must filter on Posting.
    assert any(a.sub_category == "Cash" and a.account_type is not AccountType.POSTING for a in book.accounts)
    tax = [a for a in book.accounts if a.role in TAX_ROLES]
    assert tax
    assert all(a.category is AccountCategory.LIABILITIES for a in tax)
    assert {a.display_name for a in tax} >= {"VAT Payable"}  # CRONUS UK is a VAT company
    total_assets = next(a for a in book.accounts if a.number == "19999")
    assert total_assets.net_change == sum(
        (
            a.net_change
            for a in book.accounts
            if a.account_type is AccountType.POSTING and "10000" <= a.number < "19999"
        ),
        Decimal(0),
    )
    assert len({a.id for a in book.accounts}) == len(book.accounts)
    assert all(isinstance(a.id, uuid.UUID) for a in book.accounts)
