"""The ``subscriptions`` entity set of API v2.0: BC's webhook subscriptions.

Root-level, not company-scoped: ``{root}/subscriptions`` (GET lists the calling app's
subscriptions in the environment, POST creates one) and ``{root}/subscriptions('{id}')``
(GET, PATCH to renew, DELETE; PATCH and DELETE need the subscription's ``@odata.etag`` in
``If-Match``). Creating and renewing run the validation handshake with the notification
URL. The business_central router authenticates, applies faults and limits, then hands the
request here; refusals are :class:`SubscriptionRefused`, which it answers as BC's errors.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from hub_sandbox.clock import SandboxClock
from hub_sandbox.tenants import SandboxEnvironment, SandboxTenant
from hub_sandbox.webhook_delivery import WebhookCourier
from hub_sandbox.webhooks import (
    Subscription,
    SubscriptionRefused,
    Webhooks,
    check_client_state,
    check_notification_url,
    etag_matches,
    new_subscription,
    parse_resource,
    renewed,
    subscription_json,
)

SUBSCRIPTIONS = "subscriptions"


@dataclass(frozen=True)
class SubscriptionRequest:
    tenant: SandboxTenant
    environment: SandboxEnvironment
    app_id: str
    user_id: uuid.UUID
    method: str
    key: str | None  # the subscription id of subscriptions('{id}')
    body: bytes
    if_match: str | None
    root_url: str  # https://host:port/v2.0/{tenant}/{environment}/api/v2.0


@dataclass
class SubscriptionAnswer:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


def subscription_key(key: str) -> str:
    """``'abc'`` (BC quotes the string key) or ``abc``."""
    return key.strip().strip("'")


def _not_found(subscription_id: str) -> SubscriptionRefused:
    return SubscriptionRefused(
        "The API Webhook Subscription does not exist. Identification fields and values:"
        f" Subscription Id='{subscription_id}'",
        code="BadRequest_NotFound",
        status=404,
    )


def _fields(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        raise SubscriptionRefused("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise SubscriptionRefused("The request body must be a JSON object.")
    for name in ("notificationUrl", "resource", "clientState"):
        if name in document and not isinstance(document[name], str):
            raise SubscriptionRefused(f"The property '{name}' must be a string.")
    return document


class SubscriptionsApi:
    def __init__(self, webhooks: Webhooks, courier: WebhookCourier, clock: SandboxClock) -> None:
        self.webhooks = webhooks
        self.courier = courier
        self.clock = clock

    async def handle(self, request: SubscriptionRequest) -> SubscriptionAnswer:
        if request.key is None:
            if request.method == "POST":
                return await self._create(request)
            return self._list(request)
        subscription = self._own(request, subscription_key(request.key))
        if request.method == "GET":
            return self._single(request, subscription, 200)
        if request.method == "PATCH":
            return await self._renew(request, subscription)
        return self._delete(request, subscription)

    def _own(self, request: SubscriptionRequest, subscription_id: str) -> Subscription:
        """A live subscription of the calling app in this environment (others are not found)."""
        subscription = self.webhooks.store.get(subscription_id, self.clock.now())
        if (
            subscription is None
            or not subscription.in_environment(request.tenant.id, request.environment.name)
            or subscription.app_id != request.app_id
        ):
            raise _not_found(subscription_id)
        return subscription

    def _single(self, request: SubscriptionRequest, subscription: Subscription, status: int) -> SubscriptionAnswer:
        body = {"@odata.context": f"{request.root_url}/$metadata#{SUBSCRIPTIONS}/$entity"}
        body |= subscription_json(subscription)
        headers = {"ETag": subscription.etag}
        if status == 201:
            headers["Location"] = f"{request.root_url}/{SUBSCRIPTIONS}('{subscription.id}')"
        return SubscriptionAnswer(status, body, headers)

    def _list(self, request: SubscriptionRequest) -> SubscriptionAnswer:
        now = self.clock.now()
        mine = self.webhooks.store.of_app(request.tenant.id, request.environment.name, request.app_id, now)
        body = {
            "@odata.context": f"{request.root_url}/$metadata#{SUBSCRIPTIONS}",
            "value": [subscription_json(s) for s in sorted(mine, key=lambda s: s.created_at)],
        }
        return SubscriptionAnswer(200, body)

    async def _create(self, request: SubscriptionRequest) -> SubscriptionAnswer:
        fields = _fields(request.body)
        if "notificationUrl" not in fields or "resource" not in fields:
            raise SubscriptionRefused("A subscription needs a notificationUrl and a resource.")
        notification_url = check_notification_url(fields["notificationUrl"])
        client_state = check_client_state(fields.get("clientState", ""))
        target = parse_resource(fields["resource"])
        if request.environment.company(target.company_id) is None:
            raise SubscriptionRefused(f"The company '{target.company_id}' of the resource does not exist.")
        store = self.webhooks.store
        store.check_room(request.tenant.id, request.environment.name, self.clock.now())
        await self.courier.validate(notification_url, "create")
        now = self.clock.now()
        # Checked again: another create may have taken the last place during the handshake.
        store.check_room(request.tenant.id, request.environment.name, now)
        subscription = new_subscription(
            store,
            tenant_id=request.tenant.id,
            environment=request.environment.name,
            app_id=request.app_id,
            user_id=request.user_id,
            notification_url=notification_url,
            resource=fields["resource"],
            target=target,
            client_state=client_state,
            now=now,
        )
        store.put(subscription)
        return self._single(request, subscription, 201)

    def _check_if_match(self, request: SubscriptionRequest, subscription: Subscription) -> None:
        if request.if_match is None:
            # Not documented by Microsoft: BC asks for If-Match on PATCH and DELETE; the
            # sandbox answers its absence with 428 Precondition Required.
            raise SubscriptionRefused(
                "The request must be conditional: send the subscription's @odata.etag in an If-Match header.",
                code="BadRequest_InvalidToken",
                status=428,
            )
        if not etag_matches(request.if_match, subscription):
            raise SubscriptionRefused(
                "Another user has already changed the record.", code="Request_EntityChanged", status=409
            )

    async def _renew(self, request: SubscriptionRequest, subscription: Subscription) -> SubscriptionAnswer:
        self._check_if_match(request, subscription)
        fields = _fields(request.body)
        if "resource" in fields and parse_resource(fields["resource"]) != subscription.target:
            raise SubscriptionRefused("The resource of a subscription cannot be changed.")
        notification_url = check_notification_url(fields["notificationUrl"]) if "notificationUrl" in fields else None
        client_state = check_client_state(fields["clientState"]) if "clientState" in fields else None
        await self.courier.validate(notification_url or subscription.notification_url, "renew")
        now = self.clock.now()
        current = self.webhooks.store.get(subscription.id, now)
        if current is None or current.timestamp != subscription.timestamp:
            # Deleted, expired or renewed by someone else during the handshake.
            raise SubscriptionRefused(
                "Another user has already changed the record.", code="Request_EntityChanged", status=409
            )
        renewal = renewed(self.webhooks.store, subscription, now, notification_url, client_state)
        self.webhooks.store.put(renewal)
        return self._single(request, renewal, 200)

    def _delete(self, request: SubscriptionRequest, subscription: Subscription) -> SubscriptionAnswer:
        self._check_if_match(request, subscription)
        self.webhooks.forget(subscription.id)
        return SubscriptionAnswer(204, None)
