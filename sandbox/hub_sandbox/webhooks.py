"""BC API v2.0 webhooks, the pure part: subscriptions, their expiry and limit, batching of
changes into notices, and what to do with a subscriber's answer.

No I/O here: :mod:`hub_sandbox.subscriptions` serves the ``subscriptions`` entity set and
:mod:`hub_sandbox.webhook_delivery` does the HTTP calls (handshake, notification POSTs).
Every time comes from the caller (the sandbox clock), so the rules are testable as they are.

BC's behaviour (reference §7, ``dynamics-subscriptions.md``):

- a subscription lives three days from its creation or last renewal (PATCH);
- changes are not sent at once: BC waits (30 s online) after the first change to a
  subscribed resource, then POSTs every change of the wait to the notification URL, one
  body for every subscription that shares the URL; a record changed several times in one
  wait is one notice;
- more than 1,000 changed records in one wait become one ``collection`` notice whose
  resource filters on the modification time;
- a subscriber answering 408, 429 or 5xx (or not answering) gets the notification again
  over the next 36 hours; any other failure deletes the subscription.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hub_sandbox.book_changes import ChangeType, RecordChange
from hub_sandbox.entities import etag_for
from hub_sandbox.odata import to_json_value
from hub_sandbox.settings import SandboxSettings

SUBSCRIPTION_LIFETIME = dt.timedelta(days=3)
RETRY_WINDOW = dt.timedelta(hours=36)
LONGEST_RETRY_WAIT = dt.timedelta(hours=1)
CLIENT_STATE_MAX_LENGTH = 2048
COLLECTION = "collection"
# How many attempts, handshakes and deliveries the admin views keep.
LOG_LENGTH = 2_000

# The API v2.0 entity sets BC sends notifications for (reference §7). Report entities,
# API queries and temporary-table pages are not among them.
WEBHOOK_ENTITY_SETS = frozenset(
    {
        "accounts", "companyInformation", "countriesRegions", "currencies",
        "customerPaymentJournals", "customers", "dimensions", "employees",
        "generalLedgerEntries", "itemCategories", "items", "journals", "paymentMethods",
        "paymentTerms", "purchaseInvoices", "salesCreditMemos", "salesInvoices", "salesOrders",
        "salesQuotes", "shipmentMethods", "unitsOfMeasure", "vendors",
    }
)  # fmt: skip


@dataclass(frozen=True)
class WebhookSettings:
    delay: dt.timedelta
    collection_threshold: int
    timeout_seconds: float
    first_retry_wait: dt.timedelta
    subscription_limit: int


def webhook_settings(settings: SandboxSettings) -> WebhookSettings:
    return WebhookSettings(
        delay=dt.timedelta(seconds=settings.sandbox_webhook_delay_seconds),
        collection_threshold=settings.sandbox_webhook_collection_threshold,
        timeout_seconds=settings.sandbox_webhook_timeout_seconds,
        first_retry_wait=dt.timedelta(seconds=settings.sandbox_webhook_retry_seconds),
        subscription_limit=settings.sandbox_webhook_subscription_limit,
    )


class SubscriptionRefused(ValueError):
    """A subscription BC would not create or renew: HTTP ``status`` with BC's error body."""

    def __init__(self, message: str, code: str = "BadRequest", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


# ---------------------------------------------------------------------------------------
# Subscriptions
# ---------------------------------------------------------------------------------------

_RESOURCE = re.compile(r"^/?api/v2\.0/companies\((?P<company>[^()/]+)\)/(?P<entity_set>[A-Za-z]+)$")


@dataclass(frozen=True)
class SubscribedResource:
    company_id: uuid.UUID
    entity_set: str


def parse_resource(resource: str) -> SubscribedResource:
    """``/api/v2.0/companies({id})/{entitySet}`` (leading slash optional; an absolute URL
    is read from its ``api/v2.0/`` part, as BC accepts both)."""
    text = resource.strip()
    if "://" in text:
        marker = text.find("/api/v2.0/")
        text = text[marker:] if marker >= 0 else text
    match = _RESOURCE.match(text)
    if match is None:
        raise SubscriptionRefused(
            f"The resource '{resource}' is not an API v2.0 entity set of a company"
            " (/api/v2.0/companies({id})/{entitySet})."
        )
    try:
        company_id = uuid.UUID(match["company"].strip("'{}"))
    except ValueError:
        raise SubscriptionRefused(f"The company id in the resource '{resource}' is not a GUID.") from None
    entity_set = match["entity_set"]
    if entity_set not in WEBHOOK_ENTITY_SETS:
        raise SubscriptionRefused(f"The resource '{resource}' does not support webhook subscriptions.")
    return SubscribedResource(company_id, entity_set)


def check_notification_url(url: str) -> str:
    split = urlsplit(url.strip())
    if split.scheme not in ("http", "https") or not split.netloc:
        raise SubscriptionRefused(f"The notification URL '{url}' is not an absolute http or https URL.")
    return url.strip()


def check_client_state(client_state: str) -> str:
    if len(client_state) > CLIENT_STATE_MAX_LENGTH:
        # BC's text for a value longer than its field.
        raise SubscriptionRefused(
            f"The length of the string is {len(client_state)}, but it must be less than or equal to"
            f" {CLIENT_STATE_MAX_LENGTH} characters."
        )
    return client_state


@dataclass(frozen=True)
class Subscription:
    id: str
    tenant_id: uuid.UUID
    environment: str  # as BC names it (case kept)
    app_id: str  # the caller's client id: each app sees only its own subscriptions
    user_id: uuid.UUID  # the caller's object id (the app's service principal)
    notification_url: str
    resource: str  # as the client wrote it
    target: SubscribedResource
    client_state: str
    created_at: dt.datetime
    modified_at: dt.datetime
    expires_at: dt.datetime
    timestamp: int  # row version: grows with every change

    @property
    def etag(self) -> str:
        return etag_for({"subscriptionId": self.id, "timestamp": self.timestamp})

    def is_live(self, now: dt.datetime) -> bool:
        return now < self.expires_at

    def in_environment(self, tenant_id: uuid.UUID, environment: str) -> bool:
        return self.tenant_id == tenant_id and self.environment.casefold() == environment.casefold()


def subscription_json(subscription: Subscription) -> dict[str, Any]:
    """The subscription as API v2.0 writes it (the entity's properties, in BC's order)."""
    s = subscription
    return {
        "@odata.etag": s.etag,
        "subscriptionId": s.id,
        "notificationUrl": s.notification_url,
        "resource": s.resource,
        "timestamp": s.timestamp,
        "userId": str(s.user_id),
        "lastModifiedDateTime": to_json_value(s.modified_at),
        "clientState": s.client_state,
        "expirationDateTime": to_json_value(s.expires_at),
        "systemCreatedAt": to_json_value(s.created_at),
        "systemCreatedBy": str(s.user_id),
        "systemModifiedAt": to_json_value(s.modified_at),
        "systemModifiedBy": str(s.user_id),
    }


def _environment_key(tenant_id: uuid.UUID, environment: str) -> tuple[uuid.UUID, str]:
    return tenant_id, environment.casefold()


class SubscriptionStore:
    """Every app's subscriptions, by id. Expired ones are gone for every reader."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._subscriptions: dict[str, Subscription] = {}
        # Subscriptions other apps hold in an environment (admin API): they count toward
        # the limit, which BC applies to the environment, not to one app.
        self._other_apps: dict[tuple[uuid.UUID, str], int] = {}
        self._row_version = 0

    def next_timestamp(self) -> int:
        self._row_version += 1
        return self._row_version

    def live(self, now: dt.datetime) -> list[Subscription]:
        expired = [i for i, s in self._subscriptions.items() if not s.is_live(now)]
        for subscription_id in expired:
            del self._subscriptions[subscription_id]
        return list(self._subscriptions.values())

    def get(self, subscription_id: str, now: dt.datetime) -> Subscription | None:
        subscription = self._subscriptions.get(subscription_id)
        return subscription if subscription is not None and subscription.is_live(now) else None

    def of_app(self, tenant_id: uuid.UUID, environment: str, app_id: str, now: dt.datetime) -> list[Subscription]:
        return [s for s in self.live(now) if s.in_environment(tenant_id, environment) and s.app_id == app_id]

    def count_in_environment(self, tenant_id: uuid.UUID, environment: str, now: dt.datetime) -> int:
        ours = sum(1 for s in self.live(now) if s.in_environment(tenant_id, environment))
        return ours + self._other_apps.get(_environment_key(tenant_id, environment), 0)

    def check_room(self, tenant_id: uuid.UUID, environment: str, now: dt.datetime) -> None:
        if self.count_in_environment(tenant_id, environment, now) >= self.limit:
            # Microsoft documents the limit (200 per environment) but not the error a
            # subscription beyond it gets; this status, code and text are the sandbox's.
            raise SubscriptionRefused(
                f"The maximum number of webhook subscriptions ({self.limit}) for the environment"
                f" '{environment}' has been reached. Delete a subscription before you create a new one.",
                code="BadRequest_SubscriptionLimitReached",
            )

    def set_other_apps(self, tenant_id: uuid.UUID, environment: str, count: int) -> None:
        self._other_apps[_environment_key(tenant_id, environment)] = count

    def other_apps(self, tenant_id: uuid.UUID, environment: str) -> int:
        return self._other_apps.get(_environment_key(tenant_id, environment), 0)

    def put(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.id] = subscription

    def remove(self, subscription_id: str) -> Subscription | None:
        return self._subscriptions.pop(subscription_id, None)

    def clear(self) -> None:
        self._subscriptions.clear()
        self._other_apps.clear()


def new_subscription(
    store: SubscriptionStore,
    *,
    tenant_id: uuid.UUID,
    environment: str,
    app_id: str,
    user_id: uuid.UUID,
    notification_url: str,
    resource: str,
    target: SubscribedResource,
    client_state: str,
    now: dt.datetime,
) -> Subscription:
    return Subscription(
        # BC's subscription ids are GUIDs without braces or dashes.
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        environment=environment,
        app_id=app_id,
        user_id=user_id,
        notification_url=notification_url,
        resource=resource,
        target=target,
        client_state=client_state,
        created_at=now,
        modified_at=now,
        expires_at=now + SUBSCRIPTION_LIFETIME,
        timestamp=store.next_timestamp(),
    )


def renewed(
    store: SubscriptionStore,
    subscription: Subscription,
    now: dt.datetime,
    notification_url: str | None = None,
    client_state: str | None = None,
) -> Subscription:
    """Three more days from now (and the URL or client state the PATCH changed)."""
    return dataclasses.replace(
        subscription,
        notification_url=subscription.notification_url if notification_url is None else notification_url,
        client_state=subscription.client_state if client_state is None else client_state,
        modified_at=now,
        expires_at=now + SUBSCRIPTION_LIFETIME,
        timestamp=store.next_timestamp(),
    )


def etag_matches(if_match: str, subscription: Subscription) -> bool:
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or subscription.etag in tags


# ---------------------------------------------------------------------------------------
# Batching changes into notices
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One entry of a notification body, before the subscription's fields are added."""

    subscription_id: str
    resource: str  # api/v2.0/companies({id})/{entitySet}({id}) or a collection's filter
    change_type: str
    last_modified: dt.datetime


@dataclass
class PendingBatch:
    """The changes of one subscription's wait, one per record (the last change wins, but
    a record created in the wait stays ``created`` unless it is deleted)."""

    opened_at: dt.datetime
    changes: dict[uuid.UUID, RecordChange] = field(default_factory=dict)

    def add(self, change: RecordChange) -> None:
        earlier = self.changes.pop(change.record_id, None)
        if (
            earlier is not None
            and earlier.change_type is ChangeType.CREATED
            and change.change_type is ChangeType.UPDATED
        ):
            change = dataclasses.replace(change, change_type=ChangeType.CREATED)
        self.changes[change.record_id] = change


def record_resource(company_id: uuid.UUID, entity_set: str, record_id: uuid.UUID) -> str:
    return f"api/v2.0/companies({company_id})/{entity_set}({record_id})"


def collection_resource(company_id: uuid.UUID, entity_set: str, since: dt.datetime) -> str:
    """The entity set filtered to records modified after ``since``. BC's documentation
    writes ``lastDateTimeModified``, a field no v2.0 entity has; the sandbox filters on
    ``lastModifiedDateTime``, which every webhook-enabled v2.0 entity it serves carries.
    Spaces are percent-encoded, as in BC's example."""
    stamp = to_json_value(since)
    return f"api/v2.0/companies({company_id})/{entity_set}?$filter=lastModifiedDateTime%20gt%20{stamp}"


def batch_notices(subscription: Subscription, batch: PendingBatch, threshold: int) -> list[Notice]:
    """The notices of a finished wait: one per record, or one ``collection`` notice when
    more than ``threshold`` records changed."""
    changes = list(batch.changes.values())
    target = subscription.target
    if len(changes) > threshold:
        earliest = min(c.last_modified for c in changes)
        latest = max(c.last_modified for c in changes)
        # A millisecond before the first change, so "gt" keeps it (times carry milliseconds).
        since = earliest - dt.timedelta(milliseconds=1)
        resource = collection_resource(target.company_id, target.entity_set, since)
        return [Notice(subscription.id, resource, COLLECTION, latest)]
    return [
        Notice(
            subscription.id,
            record_resource(c.company_id, c.entity_set, c.record_id),
            c.change_type.value,
            c.last_modified,
        )
        for c in changes
    ]


def notification_body(notices: Iterable[Notice], subscriptions: dict[str, Subscription]) -> dict[str, Any]:
    """``{"value":[...]}`` for the notices whose subscription is still live."""
    return {
        "value": [
            {
                "subscriptionId": n.subscription_id,
                "clientState": subscriptions[n.subscription_id].client_state,
                "expirationDateTime": to_json_value(subscriptions[n.subscription_id].expires_at),
                "resource": n.resource,
                "changeType": n.change_type,
                "lastModifiedDateTime": to_json_value(n.last_modified),
            }
            for n in notices
            if n.subscription_id in subscriptions
        ]
    }


# ---------------------------------------------------------------------------------------
# Deliveries and what the subscriber's answer means
# ---------------------------------------------------------------------------------------


def is_retryable(status: int | None) -> bool:
    """408, 429, 5xx or no answer at all: BC tries again; anything else is final."""
    return status is None or status in (408, 429) or 500 <= status <= 599


def retry_wait(attempts: int, first_wait: dt.timedelta) -> dt.timedelta:
    """Doubling waits (first, 2×, 4×, ...) of at most an hour. BC documents only that it
    retries "several" times over 36 hours."""
    wait: dt.timedelta = first_wait * 2 ** max(0, attempts - 1)
    return min(wait, LONGEST_RETRY_WAIT)


@dataclass
class Delivery:
    """One notification POST to one URL, tried until it succeeds or is given up."""

    id: int
    url: str
    notices: tuple[Notice, ...]
    due_at: dt.datetime
    first_attempt_at: dt.datetime | None = None
    attempts: int = 0


class Outcome:
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVEN_UP = "given_up"  # 36 hours of retries
    SUBSCRIPTIONS_DELETED = "subscriptions_deleted"
    NOTHING_TO_SEND = "nothing_to_send"  # every subscription expired or was deleted


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: int
    url: str
    at: dt.datetime
    status: int | None
    error: str | None
    body: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class HandshakeAttempt:
    url: str
    purpose: str  # "create" or "renew"
    at: dt.datetime
    status: int | None
    error: str | None
    ok: bool


class Webhooks:
    """Subscriptions, pending changes, deliveries and their logs in one sandbox process.

    Used from the event loop only (routes and the delivery task), so no locks.
    """

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.store = SubscriptionStore(settings.subscription_limit)
        self._batches: dict[str, PendingBatch] = {}
        self._deliveries: list[Delivery] = []
        self._next_delivery_id = 1
        self.delivery_log: deque[DeliveryAttempt] = deque(maxlen=LOG_LENGTH)
        self.handshake_log: deque[HandshakeAttempt] = deque(maxlen=LOG_LENGTH)

    def record_changes(self, changes: Iterable[RecordChange], now: dt.datetime) -> int:
        """Queue each change for every live subscription to its company and entity set;
        the number of (subscription, change) pairs queued."""
        subscriptions = self.store.live(now)
        queued = 0
        for change in changes:
            for subscription in subscriptions:
                target = subscription.target
                if target.company_id == change.company_id and target.entity_set == change.entity_set:
                    batch = self._batches.setdefault(subscription.id, PendingBatch(opened_at=now))
                    batch.add(change)
                    queued += 1
        return queued

    def forget(self, subscription_id: str) -> None:
        """A deleted subscription gets nothing more, not even what is already queued."""
        self.store.remove(subscription_id)
        self._batches.pop(subscription_id, None)

    def due_deliveries(self, now: dt.datetime) -> list[Delivery]:
        """Close the waits that are over into deliveries (one per notification URL), and
        return every delivery due now."""
        live = {s.id: s for s in self.store.live(now)}
        closed: dict[str, list[Notice]] = {}
        for subscription_id, batch in list(self._batches.items()):
            if batch.opened_at + self.settings.delay > now:
                continue
            del self._batches[subscription_id]
            subscription = live.get(subscription_id)
            if subscription is None:
                continue  # expired during the wait: never notified
            notices = batch_notices(subscription, batch, self.settings.collection_threshold)
            closed.setdefault(subscription.notification_url, []).extend(notices)
        for url, notices in closed.items():
            self._deliveries.append(Delivery(self._next_delivery_id, url, tuple(notices), due_at=now))
            self._next_delivery_id += 1
        return [d for d in self._deliveries if d.due_at <= now]

    def body_of(self, delivery: Delivery, now: dt.datetime) -> dict[str, Any]:
        live = {s.id: s for s in self.store.live(now)}
        return notification_body(delivery.notices, live)

    def settle(
        self,
        delivery: Delivery,
        body: dict[str, Any],
        status: int | None,
        error: str | None,
        now: dt.datetime,
    ) -> str:
        """Apply a subscriber's answer (``status`` None: no answer) and log the attempt."""
        delivery.attempts += 1
        if delivery.first_attempt_at is None:
            delivery.first_attempt_at = now
        if status is not None and 200 <= status <= 299:
            outcome = Outcome.DELIVERED
        elif is_retryable(status):
            if now - delivery.first_attempt_at >= RETRY_WINDOW:
                outcome = Outcome.GIVEN_UP
            else:
                outcome = Outcome.RETRY
                delivery.due_at = now + retry_wait(delivery.attempts, self.settings.first_retry_wait)
        else:
            outcome = Outcome.SUBSCRIPTIONS_DELETED
            for subscription_id in {n.subscription_id for n in delivery.notices}:
                self.forget(subscription_id)
        if outcome != Outcome.RETRY:
            self._deliveries.remove(delivery)
        self.delivery_log.append(DeliveryAttempt(delivery.id, delivery.url, now, status, error, body, outcome))
        return outcome

    def drop(self, delivery: Delivery, now: dt.datetime) -> None:
        """Nothing left to send (its subscriptions expired or were deleted)."""
        self._deliveries.remove(delivery)
        self.delivery_log.append(
            DeliveryAttempt(delivery.id, delivery.url, now, None, None, {"value": []}, Outcome.NOTHING_TO_SEND)
        )

    def pending(self) -> tuple[int, int]:
        """(subscriptions with changes waiting, deliveries waiting to be sent or retried)."""
        return len(self._batches), len(self._deliveries)

    def clear(self) -> None:
        self.store.clear()
        self._batches.clear()
        self._deliveries.clear()
        self.delivery_log.clear()
        self.handshake_log.clear()
