"""Business Central change notifications: signed addresses and the subscription plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hub_common.change_notifications import NOTIFIED_ENTITIES, CompanyAddress, NotificationSigner, notification_url
from hub_common.events import FailureKind, NotificationState
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.notifications import subscriptions
from hub_fetcher.notifications.plan import Budget, CompanyWanted, Subscription, plan_company
from hub_fetcher.notifications.subscriptions import parse_subscription

ADDRESS = CompanyAddress(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
URL = "https://hub.example/webhooks/business-central/key"


def test_a_key_names_its_company_and_nothing_else_passes() -> None:
    signer = NotificationSigner.of_secret("a secret of the hub that is long enough")
    key = signer.key(ADDRESS)
    assert signer.address(key) == ADDRESS
    assert NotificationSigner.of_secret("another hub's secret, also long enough").address(key) is None
    tampered = key[:-2] + ("A" if key[-2] != "A" else "B") + key[-1]
    assert signer.address(tampered) is None
    for rubbish in ("", "x", "é" * 10, "=" * 86, key + "A", "A" * 500):
        assert signer.address(rubbish) is None


def test_a_client_state_belongs_to_one_company_and_entity() -> None:
    signer = NotificationSigner.of_secret("a secret of the hub that is long enough")
    state = signer.client_state(ADDRESS, "salesInvoices")
    assert len(state) <= 2048
    assert signer.client_state(ADDRESS, "salesInvoices") == state  # the same every time
    assert signer.client_state(ADDRESS, "purchaseInvoices") != state
    other = CompanyAddress(ADDRESS.firm_id, ADDRESS.client_id, uuid.uuid4())
    assert signer.client_state(other, "salesInvoices") != state
    assert (
        NotificationSigner.of_secret("another secret of a hub, long enough too").client_state(ADDRESS, "salesInvoices")
        != state
    )


def test_the_url_ends_in_the_key() -> None:
    signer = NotificationSigner.of_secret("a secret of the hub that is long enough")
    url = notification_url("https://hub.example/webhooks/business-central/", signer, ADDRESS)
    assert url == f"https://hub.example/webhooks/business-central/{signer.key(ADDRESS)}"


def _subscription(entity: str, expires_in: timedelta, subscription_id: str | None = None) -> Subscription:
    return Subscription(
        subscription_id=subscription_id or f"{entity}-{expires_in}",
        notification_url=URL,
        entity=entity,
        company_id=str(ADDRESS.company_id),
        expires_at=NOW + expires_in,
        etag='W/"1"',
    )


WANTED = CompanyWanted(company_id=str(ADDRESS.company_id), notification_url=URL, entities=NOTIFIED_ENTITIES)


def test_a_new_company_gets_every_entity() -> None:
    budget = Budget(limit=100)
    plan = plan_company(WANTED, [], budget=budget, now=NOW, renew_before=timedelta(days=2))
    assert plan.state is NotificationState.SUBSCRIBED
    assert plan.create == NOTIFIED_ENTITIES
    assert budget.used == len(NOTIFIED_ENTITIES)


def test_only_what_nears_expiry_is_renewed() -> None:
    held = [_subscription(entity, timedelta(days=3)) for entity in NOTIFIED_ENTITIES]
    held[1] = _subscription(NOTIFIED_ENTITIES[1], timedelta(hours=47))
    plan = plan_company(WANTED, held, budget=Budget(limit=100, used=5), now=NOW, renew_before=timedelta(days=2))
    assert [s.entity for s in plan.renew] == [NOTIFIED_ENTITIES[1]]
    assert not plan.create and not plan.delete
    assert len(plan.keep) == 4


def test_nothing_to_do_for_a_fresh_set() -> None:
    held = [_subscription(entity, timedelta(days=3)) for entity in NOTIFIED_ENTITIES]
    plan = plan_company(WANTED, held, budget=Budget(limit=100, used=5), now=NOW, renew_before=timedelta(days=2))
    assert not plan.changes_anything


def test_duplicates_and_unwanted_entities_go_and_the_latest_stays() -> None:
    held = [_subscription(entity, timedelta(days=3)) for entity in NOTIFIED_ENTITIES]
    older_twin = _subscription("salesInvoices", timedelta(days=1), "twin")
    unwanted = _subscription("customers", timedelta(days=3))
    budget = Budget(limit=100, used=7)
    plan = plan_company(WANTED, [*held, older_twin, unwanted], budget=budget, now=NOW, renew_before=timedelta(days=2))
    assert {s.subscription_id for s in plan.delete} == {"twin", unwanted.subscription_id}
    assert not plan.create and not plan.renew
    assert budget.used == 5


def test_an_expired_one_is_made_anew() -> None:
    held = [_subscription(entity, timedelta(days=3)) for entity in NOTIFIED_ENTITIES[1:]]
    expired = _subscription(NOTIFIED_ENTITIES[0], -timedelta(minutes=1))
    plan = plan_company(
        WANTED, [*held, expired], budget=Budget(limit=100, used=5), now=NOW, renew_before=timedelta(days=2)
    )
    assert plan.create == (NOTIFIED_ENTITIES[0],)
    assert expired in plan.delete


@pytest.mark.parametrize("others", [96, 100])
def test_a_company_without_room_for_all_its_entities_is_read_on_schedule(others: int) -> None:
    held = [_subscription(NOTIFIED_ENTITIES[0], timedelta(days=3))]
    budget = Budget(limit=100, used=others + len(held))
    plan = plan_company(WANTED, held, budget=budget, now=NOW, renew_before=timedelta(days=2))
    assert plan.state is NotificationState.POLLING
    assert not plan.create
    # What it held is given back rather than half-watching the company.
    assert plan.delete == tuple(held)
    assert budget.used == others
    assert plan.detail and "used up" in plan.detail


def test_a_company_that_fits_exactly_is_subscribed() -> None:
    budget = Budget(limit=100, used=95)
    plan = plan_company(WANTED, [], budget=budget, now=NOW, renew_before=timedelta(days=2))
    assert plan.state is NotificationState.SUBSCRIBED
    assert budget.used == 100


def test_the_share_holds_across_the_companies_of_one_refresh() -> None:
    """A limit of 10: B and C hold five each, so A gets none, whichever is planned first."""
    b = [_subscription(entity, timedelta(days=3), f"b-{entity}") for entity in NOTIFIED_ENTITIES]
    c = [_subscription(entity, timedelta(days=3), f"c-{entity}") for entity in NOTIFIED_ENTITIES]
    budget = Budget(limit=10, used=10)
    plans = [plan_company(WANTED, held, budget=budget, now=NOW, renew_before=timedelta(days=2)) for held in ([], b, c)]
    assert [p.state for p in plans] == [
        NotificationState.POLLING,
        NotificationState.SUBSCRIBED,
        NotificationState.SUBSCRIBED,
    ]
    assert budget.used == 10
    # Lowered to 7: the first holder planned gives its five back, the other keeps its own.
    budget = Budget(limit=7, used=10)
    first, second = (
        plan_company(WANTED, held, budget=budget, now=NOW, renew_before=timedelta(days=2)) for held in (b, c)
    )
    assert first.state is NotificationState.POLLING and len(first.delete) == 5
    assert second.state is NotificationState.SUBSCRIBED
    assert budget.used == 5


@pytest.mark.parametrize(
    "resource",
    [
        f"/api/v2.0/companies({ADDRESS.company_id})/salesInvoices",
        f"api/v2.0/companies({ADDRESS.company_id})/salesInvoices",
        f"https://api.businesscentral.dynamics.com/v2.0/t/Production/api/v2.0/companies({ADDRESS.company_id})/salesInvoices",
        f"/API/V2.0/Companies({str(ADDRESS.company_id).upper()})/SALESINVOICES",
    ],
    # Named by form, not by the random company id: parallel workers must collect the same ids.
    ids=["absolute-path", "relative-path", "full-url", "upper-case"],
)
def test_a_listed_subscription_is_read_from_the_resource_as_bc_echoes_it(resource: str) -> None:
    listed = parse_subscription(
        {"subscriptionId": "s1", "notificationUrl": URL, "resource": resource, "expirationDateTime": NOW.isoformat()}
    )
    assert (listed.company_id, listed.entity) == (str(ADDRESS.company_id), "salesInvoices")


@pytest.mark.parametrize(
    ("status", "message", "unreachable"),
    [
        (400, "The notification URL 'https://hub.example/hooks/x' did not validate: timed out.", True),
        (None, "the handshake with the subscriber failed", True),
        (400, "Validation of the request failed: the resource is not supported.", False),
        (403, "The notification URL did not validate.", False),
        (409, "The maximum number of subscriptions is reached.", False),
    ],
)
def test_only_a_failed_handshake_stops_asking_bc_for_the_other_companies(
    status: int | None, message: str, unreachable: bool
) -> None:
    failure = FetchFailure(FailureKind.BAD_RESPONSE, http_status=status, message=message)
    assert subscriptions._hub_unreachable(failure) is unreachable
