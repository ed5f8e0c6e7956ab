"""The pure rules of BC's webhooks: resources, expiry, the limit, batching and retries."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from hub_sandbox.book_changes import ChangeType, RecordChange
from hub_sandbox.webhooks import (
    COLLECTION,
    SUBSCRIPTION_LIFETIME,
    Outcome,
    PendingBatch,
    SubscribedResource,
    Subscription,
    SubscriptionRefused,
    SubscriptionStore,
    Webhooks,
    WebhookSettings,
    batch_notices,
    check_client_state,
    check_notification_url,
    etag_matches,
    is_retryable,
    new_subscription,
    parse_resource,
    renewed,
    retry_wait,
)

COMPANY = uuid.UUID("6f1c1b1e-64a8-4c55-9a3b-2f3e2a4b5c6d")
TENANT = uuid.UUID("0a1b2c3d-0000-4000-8000-000000000001")
T0 = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.UTC)
SETTINGS = WebhookSettings(
    delay=dt.timedelta(seconds=30),
    collection_threshold=3,
    timeout_seconds=5,
    first_retry_wait=dt.timedelta(seconds=60),
    subscription_limit=4,
)


def _subscription(store: SubscriptionStore, url: str = "http://127.0.0.1:9/hook", app: str = "app") -> Subscription:
    subscription = new_subscription(
        store,
        tenant_id=TENANT,
        environment="Production",
        app_id=app,
        user_id=uuid.uuid4(),
        notification_url=url,
        resource=f"/api/v2.0/companies({COMPANY})/salesInvoices",
        target=SubscribedResource(COMPANY, "salesInvoices"),
        client_state="secret",
        now=T0,
    )
    store.put(subscription)
    return subscription


def _change(
    at: dt.datetime = T0, record: uuid.UUID | None = None, kind: ChangeType = ChangeType.CREATED
) -> RecordChange:
    return RecordChange(COMPANY, "salesInvoices", record or uuid.uuid4(), kind, at)


@pytest.mark.parametrize(
    "resource",
    [
        f"/api/v2.0/companies({COMPANY})/customers",
        f"api/v2.0/companies({COMPANY})/generalLedgerEntries",
        f"https://api.businesscentral.dynamics.com/v2.0/t/Production/api/v2.0/companies({COMPANY})/salesInvoices",
    ],
)
def test_supported_resources(resource: str) -> None:
    assert parse_resource(resource).company_id == COMPANY


@pytest.mark.parametrize(
    "resource",
    [
        f"/api/v2.0/companies({COMPANY})/agedAccountsReceivables",  # a report (temporary table)
        f"/api/v2.0/companies({COMPANY})/customerSales",  # an API query
        f"/api/v2.0/companies({COMPANY})/customers({COMPANY})",  # one record, not a set
        "/api/v2.0/companies(not-a-guid)/customers",
        "/api/v2.0/customers",
    ],
)
def test_unsupported_resources_are_refused_with_400(resource: str) -> None:
    with pytest.raises(SubscriptionRefused) as refused:
        parse_resource(resource)
    assert refused.value.status == 400


def test_client_state_and_notification_url_checks() -> None:
    assert check_client_state("x" * 2048)
    with pytest.raises(SubscriptionRefused, match="2049"):
        check_client_state("x" * 2049)
    assert check_notification_url("http://127.0.0.1:8000/hooks") == "http://127.0.0.1:8000/hooks"
    for url in ("/hooks", "ftp://example.com/x", "https://"):
        with pytest.raises(SubscriptionRefused):
            check_notification_url(url)


def test_subscriptions_expire_three_days_after_creation_or_renewal() -> None:
    store = SubscriptionStore(limit=10)
    subscription = _subscription(store)
    assert subscription.expires_at == T0 + SUBSCRIPTION_LIFETIME
    assert store.get(subscription.id, T0 + SUBSCRIPTION_LIFETIME - dt.timedelta(seconds=1)) is not None
    later = T0 + dt.timedelta(days=2)
    renewal = renewed(store, subscription, later)
    assert renewal.expires_at == later + SUBSCRIPTION_LIFETIME and renewal.timestamp > subscription.timestamp
    assert renewal.etag != subscription.etag
    assert etag_matches(subscription.etag, subscription) and not etag_matches(subscription.etag, renewal)
    assert etag_matches("*", renewal)
    store.put(renewal)
    assert store.get(subscription.id, T0 + dt.timedelta(days=4)) is not None
    assert store.get(subscription.id, later + SUBSCRIPTION_LIFETIME) is None
    assert store.live(later + SUBSCRIPTION_LIFETIME) == []


def test_the_limit_counts_every_app_of_the_environment() -> None:
    store = SubscriptionStore(limit=4)
    _subscription(store, app="ours")
    _subscription(store, app="another registered through the API")
    store.set_other_apps(TENANT, "production", 1)
    store.check_room(TENANT, "PRODUCTION", T0)
    store.set_other_apps(TENANT, "Production", 2)
    with pytest.raises(SubscriptionRefused) as refused:
        store.check_room(TENANT, "Production", T0)
    assert refused.value.code == "BadRequest_SubscriptionLimitReached"
    store.check_room(TENANT, "Sandbox", T0)  # another environment has room
    assert [s.app_id for s in store.of_app(TENANT, "Production", "ours", T0)] == ["ours"]


def test_a_batch_keeps_one_notice_per_record() -> None:
    batch = PendingBatch(opened_at=T0)
    record = uuid.uuid4()
    batch.add(_change(T0, record, ChangeType.CREATED))
    batch.add(_change(T0 + dt.timedelta(seconds=1), record, ChangeType.UPDATED))
    other = uuid.uuid4()
    batch.add(_change(T0, other, ChangeType.UPDATED))
    batch.add(_change(T0 + dt.timedelta(seconds=2), other, ChangeType.DELETED))
    kinds = {c.record_id: c.change_type for c in batch.changes.values()}
    assert kinds == {record: ChangeType.CREATED, other: ChangeType.DELETED}


def test_more_changes_than_the_threshold_make_one_collection_notice() -> None:
    store = SubscriptionStore(limit=10)
    subscription = _subscription(store)
    batch = PendingBatch(opened_at=T0)
    for n in range(4):
        batch.add(_change(T0 + dt.timedelta(seconds=n)))
    [notice] = batch_notices(subscription, batch, threshold=3)
    assert notice.change_type == COLLECTION
    assert notice.resource == (
        f"api/v2.0/companies({COMPANY})/salesInvoices?$filter=lastModifiedDateTime%20gt%202026-05-20T11:59:59.999Z"
    )
    assert notice.last_modified == T0 + dt.timedelta(seconds=3)
    assert len(batch_notices(subscription, batch, threshold=4)) == 4


def test_waits_close_after_the_delay_into_one_delivery_per_url() -> None:
    webhooks = Webhooks(SETTINGS)
    first, second = _subscription(webhooks.store), _subscription(webhooks.store)
    elsewhere = _subscription(webhooks.store, url="http://127.0.0.1:9/other")
    assert webhooks.record_changes([_change()], T0) == 3
    webhooks.record_changes([_change(T0 + dt.timedelta(seconds=10))], T0 + dt.timedelta(seconds=10))
    assert webhooks.due_deliveries(T0 + dt.timedelta(seconds=29)) == []
    due = webhooks.due_deliveries(T0 + dt.timedelta(seconds=30))
    by_url = {d.url: d for d in due}
    assert len(due) == 2
    shared = by_url[first.notification_url]
    assert {n.subscription_id for n in shared.notices} == {first.id, second.id}
    assert len(shared.notices) == 4  # two changes for each of the two subscriptions
    body = webhooks.body_of(shared, T0 + dt.timedelta(seconds=30))
    assert {entry["clientState"] for entry in body["value"]} == {"secret"}
    assert {entry["changeType"] for entry in body["value"]} == {"created"}
    assert by_url[elsewhere.notification_url].notices[0].subscription_id == elsewhere.id


def test_retryable_answers_are_retried_for_36_hours_then_given_up() -> None:
    webhooks = Webhooks(SETTINGS)
    _subscription(webhooks.store)
    webhooks.record_changes([_change()], T0)
    now = T0 + dt.timedelta(seconds=30)
    [delivery] = webhooks.due_deliveries(now)
    body = webhooks.body_of(delivery, now)
    assert webhooks.settle(delivery, body, 503, None, now) == Outcome.RETRY
    assert delivery.due_at == now + dt.timedelta(seconds=60)
    assert webhooks.due_deliveries(now + dt.timedelta(seconds=59)) == []
    assert webhooks.settle(delivery, body, None, "timed out", now + dt.timedelta(seconds=60)) == Outcome.RETRY
    assert delivery.due_at == now + dt.timedelta(seconds=180)
    # The subscription is renewed meanwhile, so it is still live when the window ends.
    subscription = webhooks.store.live(now)[0]
    webhooks.store.put(renewed(webhooks.store, subscription, now + dt.timedelta(hours=35)))
    assert webhooks.settle(delivery, body, 429, None, now + dt.timedelta(hours=36)) == Outcome.GIVEN_UP
    assert webhooks.pending() == (0, 0)
    assert [a.outcome for a in webhooks.delivery_log] == [Outcome.RETRY, Outcome.RETRY, Outcome.GIVEN_UP]


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_other_failures_delete_the_subscriptions_of_the_post(status: int) -> None:
    webhooks = Webhooks(SETTINGS)
    subscription = _subscription(webhooks.store)
    webhooks.record_changes([_change()], T0)
    now = T0 + dt.timedelta(seconds=30)
    [delivery] = webhooks.due_deliveries(now)
    assert webhooks.settle(delivery, webhooks.body_of(delivery, now), status, None, now) == (
        Outcome.SUBSCRIPTIONS_DELETED
    )
    assert webhooks.store.get(subscription.id, now) is None


def test_expired_subscriptions_are_never_notified() -> None:
    webhooks = Webhooks(SETTINGS)
    _subscription(webhooks.store)
    webhooks.record_changes([_change()], T0 + SUBSCRIPTION_LIFETIME - dt.timedelta(seconds=5))
    assert webhooks.due_deliveries(T0 + SUBSCRIPTION_LIFETIME + dt.timedelta(seconds=30)) == []
    assert webhooks.record_changes([_change()], T0 + SUBSCRIPTION_LIFETIME) == 0


def test_retry_waits_double_up_to_an_hour() -> None:
    first = dt.timedelta(seconds=60)
    assert [retry_wait(n, first).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]
    assert retry_wait(20, first) == dt.timedelta(hours=1)
    assert all(is_retryable(s) for s in (None, 408, 429, 500, 503, 599))
    assert not any(is_retryable(s) for s in (400, 401, 404, 410, 301))
