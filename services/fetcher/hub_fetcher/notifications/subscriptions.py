"""Keeping each company's BC webhook subscriptions: listed, created, renewed and deleted
through BC's API v2.0 ``subscriptions`` endpoint, by every refresh before it reads the
company (BC notifies only changes made once a subscription exists).

Each refresh of a client lists the hub app's subscriptions in its environment once, drops
those it can no longer stand for (a key signed with an old secret; a company the client no
longer has), then follows ``plan.plan_company`` for every company it reads. BC answers a
create or a renewal only after it has called the notification URL with a validation token
(the handshake the gateway answers), so a subscription that exists has been proven to reach
the hub.
Expiry is judged on BC's clock (the ``Date`` of its answer), not the fetcher's.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub_common.change_notifications import (
    NOTIFIED_ENTITIES,
    CompanyAddress,
    NotificationSigner,
    notification_url,
)
from hub_common.events import FailureKind, NotificationState, NotificationSubscriptionsChecked
from hub_common.logging import get_logger
from hub_fetcher.bc.client import BusinessCentral, Environment
from hub_fetcher.bc.entities import Company
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.notifications.plan import Budget, CompanyWanted, Plan, Subscription, plan_company

logger = get_logger(__name__)

HTTP_NOT_FOUND = 404
# A subscription changed since its ETag was read: BC answers 409 Request_EntityChanged (the
# reference's "Concurrency"); 412 is OData's own word for it, taken the same way.
CHANGED_SINCE_READ = frozenset({409, 412})
# "/api/v2.0/companies(<id>)/salesInvoices" anywhere in the resource: BC may echo it as
# sent, absolute ("https://…/api/v2.0/…") or normalised (its URL paths ignore case).
_RESOURCE = re.compile(r"api/v2\.0/companies\(([0-9a-f-]{36})\)/([a-z]+)", re.IGNORECASE)
_ENTITY_BY_LOWER_NAME = {entity.lower(): entity for entity in NOTIFIED_ENTITIES}
# How many of the environment's subscriptions one hub takes at most.
MAX_LISTED = 1000


class _ListedSubscription(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    subscription_id: str = Field(alias="subscriptionId", min_length=1, max_length=200)
    notification_url: str = Field(alias="notificationUrl", max_length=4000)
    resource: str = Field(max_length=2000)
    expiration: datetime = Field(alias="expirationDateTime")
    etag: str | None = Field(default=None, alias="@odata.etag", max_length=500)


def parse_subscription(item: dict[str, Any], etag_header: str | None = None) -> Subscription:
    try:
        listed = _ListedSubscription.model_validate(item)
    except ValidationError as error:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE, message=f"subscriptions: {error.error_count()} invalid field(s)"
        ) from error
    match = _RESOURCE.search(listed.resource)
    expires_at = listed.expiration if listed.expiration.tzinfo else listed.expiration.replace(tzinfo=UTC)
    return Subscription(
        subscription_id=listed.subscription_id,
        notification_url=listed.notification_url,
        entity=_ENTITY_BY_LOWER_NAME.get(match.group(2).lower(), match.group(2)) if match else None,
        company_id=match.group(1).lower() if match else None,
        expires_at=expires_at,
        etag=listed.etag or etag_header,
    )


def bc_time(headers: dict[str, str]) -> datetime:
    """BC's own now (its answer's Date), so expiry is judged on its clock."""
    stated = headers.get("date")
    if stated:
        try:
            return parsedate_to_datetime(stated).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


@dataclass(frozen=True)
class CompanyOutcome:
    state: NotificationState
    entities: list[str]
    expires_at: datetime | None
    detail: str | None
    failure: FetchFailure | None
    # Whether anything was created, renewed or deleted at BC.
    changed: bool

    def fingerprint(self) -> str:
        """What the company's card shows, to tell whether it must be recorded again."""
        expires = self.expires_at.isoformat() if self.expires_at else ""
        return f"{self.state.value}|{','.join(self.entities)}|{expires}|{self.detail or ''}"


Record = Callable[[NotificationSubscriptionsChecked], Awaitable[None]]


class NotificationSubscriptions:
    def __init__(
        self,
        bc: BusinessCentral,
        *,
        base_url: str,
        signer: NotificationSigner,
        per_environment: int,
        renew_before: timedelta,
        recorded_states: KeyValue | None = None,
    ) -> None:
        self._bc = bc
        self._base_url = base_url.rstrip("/")
        self._signer = signer
        self._per_environment = per_environment
        self._renew_before = renew_before
        # What each company's state was last recorded as (a cache; missing: record it).
        self._recorded_states = recorded_states

    def _url(self, environment: Environment) -> str:
        return f"{self._bc.root(environment)}/subscriptions"

    def _one(self, environment: Environment, subscription_id: str) -> str:
        return f"{self._url(environment)}('{quote(subscription_id, safe='')}')"

    async def keep(
        self,
        environment: Environment,
        *,
        firm_id: uuid.UUID,
        client_id: uuid.UUID,
        companies: Sequence[Company],
        record: Record,
        discovered: Sequence[uuid.UUID] | None = None,
        within_seconds: float | None = None,
    ) -> None:
        """Bring each company's subscriptions in line, and record each company's state
        where it differs from the one last recorded.

        ``discovered``: every company of the client, given on a refresh of the whole client;
        the client's subscriptions for any other company are then deleted (it is gone, or
        the hub can no longer see it), so they stop counting against the hub's share.

        ``within_seconds``: how long the upkeep may take. BC answers each create and renewal
        only after its handshake with the hub's notification address, so a slow address
        makes each take seconds; what is not done by then waits for the next refresh (a
        subscription BC made meanwhile is listed then), and the refresh reads its companies.
        """
        if not companies and discovered is None:
            return
        timer = asyncio.timeout(within_seconds)
        try:
            async with timer:
                await self._keep(environment, firm_id, client_id, companies, record, discovered)
        except TimeoutError:
            if not timer.expired():
                raise
            logger.warning("keeping the subscriptions ran out of time; the rest waits", seconds=within_seconds)

    async def _keep(
        self,
        environment: Environment,
        firm_id: uuid.UUID,
        client_id: uuid.UUID,
        companies: Sequence[Company],
        record: Record,
        discovered: Sequence[uuid.UUID] | None,
    ) -> None:
        try:
            ours, now = await self._list(environment)
        except FetchFailure as failure:
            logger.info("listing subscriptions failed", kind=failure.kind.value)
            for company in companies:
                outcome = _failed(failure, "listing the subscriptions failed")
                await self._record(firm_id, client_id, company, outcome, record)
            return
        ours = await self._drop_unwanted(environment, ours, firm_id, client_id, discovered)
        budget = Budget(limit=self._per_environment, used=len(ours))
        addresses = {company.id: CompanyAddress(firm_id, client_id, company.id) for company in companies}
        urls = {
            company.id: notification_url(self._base_url, self._signer, addresses[company.id]) for company in companies
        }
        own = {company.id: [s for s in ours if s.notification_url == urls[company.id]] for company in companies}
        # Once BC could not reach the hub's notification address, it cannot for the next
        # company either: those that need a handshake share the outcome without asking BC
        # (each try would cost BC's whole handshake timeout, company after company).
        unreachable: CompanyOutcome | None = None
        # Those already subscribed first, so the share goes to the same companies every time
        # rather than to whichever was read first.
        for company in sorted(companies, key=lambda c: (-len(own[c.id]), str(c.id))):
            wanted = CompanyWanted(
                company_id=str(company.id), notification_url=urls[company.id], entities=NOTIFIED_ENTITIES
            )
            plan = plan_company(wanted, own[company.id], budget=budget, now=now, renew_before=self._renew_before)
            if unreachable is not None and (plan.create or plan.renew):
                outcome = unreachable
            else:
                outcome = await self._carry_out(environment, addresses[company.id], plan)
                if outcome.failure is not None and _hub_unreachable(outcome.failure):
                    unreachable = outcome
            await self._record(firm_id, client_id, company, outcome, record)

    async def _drop_unwanted(
        self,
        environment: Environment,
        ours: list[Subscription],
        firm_id: uuid.UUID,
        client_id: uuid.UUID,
        discovered: Sequence[uuid.UUID] | None,
    ) -> list[Subscription]:
        """Delete the hub's subscriptions that no company will ever renew: those whose key
        this hub no longer signs (``HUB_SECRET_KEY`` was rotated; their notices are refused
        anyway) and, when ``discovered`` is given, this client's for companies it no longer
        has. Each counts against the hub's share until BC lets it lapse. Returns the rest;
        one whose delete failed stays counted, and the next refresh tries again."""
        remaining: list[Subscription] = []
        known = {str(company_id) for company_id in discovered} if discovered is not None else None
        for subscription in ours:
            address = self._signer.address(subscription.notification_url[len(self._base_url) + 1 :])
            unsigned = address is None
            company_gone = (
                address is not None
                and known is not None
                and (address.firm_id, address.client_id) == (firm_id, client_id)
                and str(address.company_id) not in known
            )
            if not (unsigned or company_gone):
                remaining.append(subscription)
                continue
            try:
                await self._delete(environment, subscription)
            except FetchFailure as failure:
                logger.info("deleting a stale subscription failed", kind=failure.kind.value, status=failure.http_status)
                remaining.append(subscription)
                continue
            logger.info("stale subscription deleted", unsigned=unsigned, company_gone=company_gone)
        return remaining

    async def _record(
        self, firm_id: uuid.UUID, client_id: uuid.UUID, company: Company, outcome: CompanyOutcome, record: Record
    ) -> None:
        key = f"{firm_id}.{client_id}.{company.id}"
        fingerprint = outcome.fingerprint()
        if not outcome.changed and await self._recorded(key) == fingerprint:
            return
        await record(self._event(client_id, company, outcome))
        if self._recorded_states is not None:
            try:
                await self._recorded_states.put(key, fingerprint.encode())
            except NatsError:
                logger.warning("could not note the recorded notification state", exc_info=True)

    async def _recorded(self, key: str) -> str | None:
        if self._recorded_states is None:
            return None
        try:
            entry = await self._recorded_states.get(key)
        except KeyNotFoundError:
            return None
        except NatsError:
            logger.warning("could not read the recorded notification state", exc_info=True)
            return None
        return entry.value.decode() if entry.value else None

    async def _list(self, environment: Environment) -> tuple[list[Subscription], datetime]:
        """The hub's subscriptions in the environment (under its notification URL), and BC's
        now. Other apps' are passed over unread: one of an odd shape must not fail the hub's."""
        answer = await self._bc.write(environment, "GET", self._url(environment))
        document = answer.document or {}
        value = document.get("value")
        if not isinstance(value, list) or len(value) > MAX_LISTED:
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="subscriptions: not a list of subscriptions")
        prefix = self._base_url + "/"
        ours = [
            parse_subscription(item)
            for item in value
            if isinstance(item, dict)
            and isinstance(item.get("notificationUrl"), str)
            and item["notificationUrl"].startswith(prefix)
        ]
        return ours, bc_time(answer.headers)

    async def _carry_out(self, environment: Environment, address: CompanyAddress, plan: Plan) -> CompanyOutcome:
        changed = False
        kept = list(plan.keep)
        create = list(plan.create)
        try:
            for stale in plan.delete:
                await self._delete(environment, stale)
                changed = True
            for subscription in plan.renew:
                changed = True
                renewed = await self._renew(environment, subscription)
                if renewed is not None:
                    kept.append(renewed)
                elif subscription.entity:
                    # Gone at BC since it was listed: made anew with the others, all or none.
                    create.append(subscription.entity)
            if create:
                changed = True
                results = await asyncio.gather(
                    *(self._create(environment, address, entity) for entity in create), return_exceptions=True
                )
                kept.extend(result for result in results if isinstance(result, Subscription))
                failures = [result for result in results if isinstance(result, BaseException)]
                if failures:
                    return await self._give_back(environment, kept, failures)
        except FetchFailure as failure:
            logger.info("subscribing failed", kind=failure.kind.value, status=failure.http_status)
            return _failed(failure, _what_failed(failure))
        if plan.state is NotificationState.POLLING:
            return CompanyOutcome(plan.state, [], None, plan.detail, None, changed)
        return CompanyOutcome(
            state=NotificationState.SUBSCRIBED,
            entities=sorted(s.entity for s in kept if s.entity),
            expires_at=min((s.expires_at for s in kept), default=None),
            detail=None,
            failure=None,
            changed=changed,
        )

    async def _give_back(
        self, environment: Environment, held: list[Subscription], failures: list[BaseException]
    ) -> CompanyOutcome:
        """All five or none: a company BC would not give every subscription returns what it
        holds to the environment (notified of half its changes it would look fresh while it
        is not), and is read on its schedule or shown as failed."""
        for subscription in held:
            try:
                await self._delete(environment, subscription)
            except FetchFailure as not_deleted:
                # Its notices still refresh the company; the next refresh deletes it again.
                logger.info(
                    "giving a subscription back failed", kind=not_deleted.kind.value, status=not_deleted.http_status
                )
        refused = next((f for f in failures if isinstance(f, FetchFailure) and _is_limit_reached(f)), None)
        if refused is not None:
            detail = (
                "Business Central's limit of subscriptions in the environment (200, shared by every app) "
                "is reached; this company is read on its schedule"
            )
            return CompanyOutcome(NotificationState.POLLING, [], None, detail, refused, True)
        failure = next((f for f in failures if isinstance(f, FetchFailure)), None)
        if failure is None:
            raise failures[0]  # not BC's answer: a defect, for the refresh's log
        logger.info("subscribing failed", kind=failure.kind.value, status=failure.http_status)
        return _failed(failure, _what_failed(failure))

    async def _create(self, environment: Environment, address: CompanyAddress, entity: str) -> Subscription:
        # BC calls the notification URL with a validation token before it answers.
        answer = await self._bc.write(
            environment,
            "POST",
            self._url(environment),
            json_body={
                "notificationUrl": notification_url(self._base_url, self._signer, address),
                "resource": f"/api/v2.0/companies({address.company_id})/{entity}",
                "clientState": self._signer.client_state(address, entity),
            },
        )
        return self._answered(answer.document, answer.headers)

    async def _renew(self, environment: Environment, subscription: Subscription) -> Subscription | None:
        """PATCH with the subscription's ETag; BC runs the handshake again and moves the expiry
        three days on. None: it is gone (the caller makes it anew); one changed since it was
        listed is taken as BC has it now."""
        try:
            answer = await self._bc.write(
                environment,
                "PATCH",
                self._one(environment, subscription.subscription_id),
                json_body={"notificationUrl": subscription.notification_url},
                if_match=subscription.etag or "*",
            )
        except FetchFailure as failure:
            if failure.http_status == HTTP_NOT_FOUND:
                return None
            if failure.http_status in CHANGED_SINCE_READ and subscription.entity:
                # Another refresh renewed it a moment ago: take BC's current copy.
                current = await self._bc.write(environment, "GET", self._one(environment, subscription.subscription_id))
                return self._answered(current.document, current.headers)
            raise
        if answer.document is None:
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="subscriptions: a renewal without the subscription")
        return self._answered(answer.document, answer.headers)

    async def _delete(self, environment: Environment, subscription: Subscription) -> None:
        try:
            await self._bc.write(
                environment,
                "DELETE",
                self._one(environment, subscription.subscription_id),
                if_match=subscription.etag or "*",
            )
        except FetchFailure as failure:
            if failure.http_status != HTTP_NOT_FOUND:
                raise

    @staticmethod
    def _answered(document: dict[str, Any] | None, headers: dict[str, str]) -> Subscription:
        if document is None:
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="subscriptions: an answer without the subscription")
        return parse_subscription(document, headers.get("etag"))

    @staticmethod
    def _event(client_id: uuid.UUID, company: Company, outcome: CompanyOutcome) -> NotificationSubscriptionsChecked:
        return NotificationSubscriptionsChecked(
            client_id=client_id,
            company_id=company.id,
            company_name=company.name[:500],
            state=outcome.state,
            entities=outcome.entities,
            expires_at=outcome.expires_at,
            detail=outcome.detail[:500] if outcome.detail else None,
            failure=outcome.failure.to_failure() if outcome.failure else None,
        )


def _is_limit_reached(failure: FetchFailure) -> bool:
    """BC's refusal of a 201st subscription (Microsoft documents the limit, not its error code)."""
    message = f"{failure.bc_error_code or ''} {failure.message or ''}".lower()
    return failure.http_status in (400, 403, 409) and ("limit" in message or "maximum" in message)


def _hub_unreachable(failure: FetchFailure) -> bool:
    """BC's refusal because its handshake with the hub's notification address failed (a
    400 naming the notification URL's validation); not any refusal that says "validation"."""
    message = (failure.message or "").lower()
    if failure.http_status not in (None, 400):
        return False
    about_the_address = "notification" in message or "url" in message or "token" in message
    return "handshake" in message or ("validat" in message and about_the_address)


def _what_failed(failure: FetchFailure) -> str:
    if _hub_unreachable(failure):
        return (
            "Business Central could not reach the hub's notification address "
            "(HUB_NOTIFICATION_URL must be the gateway's public address)"
        )
    if failure.transient:
        return "Business Central did not take the subscription now; the next refresh tries again"
    return "Business Central refused the subscription"


def _failed(failure: FetchFailure, detail: str) -> CompanyOutcome:
    return CompanyOutcome(
        state=NotificationState.FAILED,
        entities=[],
        expires_at=None,
        detail=detail,
        failure=failure,
        changed=True,
    )
