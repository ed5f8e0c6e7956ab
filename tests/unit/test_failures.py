"""Classifying BC and Entra answers into failure kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub_common.events import FailureKind
from hub_common.retry_after import parse_retry_after
from hub_fetcher.bc.failures import (
    FetchFailure,
    Service,
    classify_bc_error,
    classify_token_error,
    correlation_from_message,
)


@pytest.mark.parametrize(
    ("status", "code", "message", "company_scoped", "kind"),
    [
        (
            401,
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
            False,
            FailureKind.CREDENTIALS_REJECTED,
        ),
        (429, None, None, True, FailureKind.THROTTLED),
        (503, None, "Service is under maintenance", False, FailureKind.ENVIRONMENT_OFFLINE),
        (504, None, None, True, FailureKind.TIMEOUT),
        (408, None, None, True, FailureKind.TIMEOUT),
        (404, "NoEnvironment", "Environment does not exist.", False, FailureKind.ENVIRONMENT_NOT_FOUND),
        (
            400,
            "Internal_CompanyNotFound",
            "default company cannot be found",
            True,
            FailureKind.NO_COMPANY_ACCESS,
        ),
        (403, "Authorization_InsufficientPermissions", "Sorry", True, FailureKind.NO_COMPANY_ACCESS),
        (
            500,
            "Internal_ServerError",
            "Sorry, the current permissions prevented the action.",
            True,
            FailureKind.NO_COMPANY_ACCESS,
        ),
        (500, "Internal_ServerError", "Something else", True, FailureKind.BAD_RESPONSE),
        (
            400,
            "Internal_TenantUnavailable",
            "The tenant 'x' is not accessible",
            False,
            FailureKind.ENVIRONMENT_OFFLINE,
        ),
    ],
)
def test_bc_errors(status: int, code: str | None, message: str | None, company_scoped: bool, kind: FailureKind) -> None:
    assert classify_bc_error(status, code, message, company_scoped=company_scoped) is kind


@pytest.mark.parametrize(
    ("status", "code", "service", "retried"),
    [
        (500, "Internal_ServerError", Service.BUSINESS_CENTRAL, True),  # BC failing inside
        (500, "Internal_MetadataSyncError", Service.BUSINESS_CENTRAL, True),  # after an extension's install
        (500, None, Service.BUSINESS_CENTRAL, True),  # a proxy's page instead of BC's body
        (507, None, Service.BUSINESS_CENTRAL, True),
        (501, None, Service.BUSINESS_CENTRAL, False),  # not implemented: no later try changes it
        (200, None, Service.BUSINESS_CENTRAL, False),  # a body that is not JSON
        (None, None, Service.BUSINESS_CENTRAL, False),
        (500, None, Service.ENTRA, False),  # identity.py decides Entra's answers
    ],
)
def test_bc_failing_inside_is_tried_again_with_its_own_words(
    status: int | None, code: str | None, service: Service, retried: bool
) -> None:
    failure = FetchFailure(
        FailureKind.BAD_RESPONSE,
        http_status=status,
        bc_error_code=code,
        message="Something went wrong.",
        service=service,
    )
    assert failure.transient is retried
    assert ("internal error" in failure.to_failure().summary) is retried
    assert failure.to_failure().kind is FailureKind.BAD_RESPONSE  # the events' kinds stay as they are


@pytest.mark.parametrize(
    ("error", "description", "codes", "kind"),
    [
        ("invalid_request", "AADSTS90002: Tenant 'x' not found.", [90002], FailureKind.TENANT_NOT_FOUND),
        (
            "unauthorized_client",
            "AADSTS700016: Application with identifier 'a' was not found",
            [700016],
            FailureKind.CONSENT_MISSING,
        ),
        (
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
            [7000215],
            FailureKind.CREDENTIALS_REJECTED,
        ),
        (
            "invalid_grant",
            "AADSTS65001: The user or administrator has not consented",
            [],
            FailureKind.CONSENT_MISSING,
        ),
        ("weird", "nothing known", [], FailureKind.BAD_RESPONSE),
    ],
)
def test_token_errors(error: str, description: str, codes: list[int], kind: FailureKind) -> None:
    assert classify_token_error(error, description, codes) is kind


def test_correlation_id_is_read_from_bc_message() -> None:
    message = "The server has rejected the client credentials.  CorrelationId:  3e1a9c2b-11aa-4b5e-9c7d-0f0e1d2c3b4a."
    assert correlation_from_message(message) == "3e1a9c2b-11aa-4b5e-9c7d-0f0e1d2c3b4a"


def test_every_kind_has_plain_words_and_transient_ones_are_retried() -> None:
    for kind in FailureKind:
        failure = FetchFailure(kind, message="x" * 5000).to_failure()
        assert failure.summary and failure.fix
        assert failure.message is not None and len(failure.message) <= 2000
    assert FetchFailure(FailureKind.THROTTLED).transient
    assert not FetchFailure(FailureKind.CREDENTIALS_REJECTED).transient


def test_taxes_due_rule_and_client_override() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from hub_fetcher.bc.entities import Account
    from hub_fetcher.figures.taxes import taxes_due

    def account(number: str, name: str, category: str, sub: str, change: str) -> Account:
        return Account.model_validate(
            {
                "number": number,
                "displayName": name,
                "category": category,
                "subCategory": sub,
                "accountType": "Posting",
                "netChange": change,
            }
        )

    accounts = [
        account("2510", "Sales VAT 25 %", "Liabilities", "Current Liabilities", "-1000.00"),
        account("2520", "Purchase VAT 25 %", "Liabilities", "Current Liabilities", "300.00"),
        account("2530", "VAT receivable", "Liabilities", "Taxes Payable", "50.00"),
        account("2600", "Wages payable", "Liabilities", "Current Liabilities", "-999.00"),
        account("1900", "Prepaid tax", "Assets", "Taxes", "-5.00"),
    ]
    now = datetime.now(UTC)
    default = taxes_due(accounts, read_at=now)
    assert [a.number for a in default.accounts] == ["2510", "2520"]
    assert default.amount == Decimal("700.00")
    override = taxes_due(accounts, read_at=now, account_numbers=frozenset({"2510", "2600"}))
    assert override.amount == Decimal("1999.00")
    assert "override" in override.rule


NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", 0.0),  # never a wait into the past
        ("Fri, 04 Dec 2026 12:01:30 GMT", 90.0),  # the HTTP-date form
        ("Fri, 04 Dec 2026 11:59:00 GMT", 0.0),  # a date gone by: at once
        ("NaN", None),
        ("inf", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_both_of_its_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds
