"""The fetcher's upkeep of BC webhook subscriptions against the real sandbox (which runs
BC's handshake against a real subscriber): what it deletes that no company will renew,
what it leaves to other apps, all five of a company or none, and subscriptions BC echoes
with an absolute resource."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from hub_common.change_notifications import NOTIFIED_ENTITIES, CompanyAddress, NotificationSigner, notification_url
from hub_common.events import NotificationState, NotificationSubscriptionsChecked
from hub_fetcher.bc.client import Answer, BusinessCentral, Environment
from hub_fetcher.bc.entities import Company
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter
from hub_fetcher.notifications.subscriptions import NotificationSubscriptions
from tests.conftest import Sandbox
from tests.sandbox.webhook_subscriber import Behaviour, Subscriber, running_subscriber
from tests.support.sandbox_bc import sandbox_tokens

SECRET = "the hub's secret key, long enough for a test"
OLD_SECRET = "the hub's secret key before it was rotated"
FIRM = uuid.uuid4()
CLIENT = uuid.uuid4()
THREE_DAYS = timedelta(days=3)


class DeletingBeforeFirstRenewal(BusinessCentral):
    """BC as it is when a subscription lapses between the listing and its renewal: the
    first PATCH finds it gone (BC's 404)."""

    renewals_seen = 0

    async def write(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        json_body: object | None = None,
        if_match: str | None = None,
    ) -> Answer:
        if method == "PATCH":
            self.renewals_seen += 1
            if self.renewals_seen == 1:
                await super().write(environment, "DELETE", url, if_match="*")
        return await super().write(environment, method, url, json_body=json_body, if_match=if_match)


class RenewedByAnotherFirst(BusinessCentral):
    """BC as it is when another fetcher renews a subscription between this one's listing
    and its renewal: this one's ETag is stale, and BC answers 409 Request_EntityChanged."""

    renewed = False

    async def write(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        json_body: object | None = None,
        if_match: str | None = None,
    ) -> Answer:
        if method == "PATCH" and not self.renewed:
            self.renewed = True
            await super().write(environment, method, url, json_body=json_body, if_match=if_match)
        return await super().write(environment, method, url, json_body=json_body, if_match=if_match)


@dataclass
class Environmentals:
    sandbox: Sandbox
    subscriber: Subscriber
    http: httpx.AsyncClient
    tokens: TokenProvider
    environment: Environment
    companies: list[Company]
    recorded: list[NotificationSubscriptionsChecked] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.subscriber.base_url}/hooks/hub"

    def bc(self, kind: type[BusinessCentral] = BusinessCentral) -> BusinessCentral:
        return kind(
            api_base=self.sandbox.base_url,
            http=self.http,
            tokens=self.tokens,
            limiter=TenantLimiter(),
            max_response_bytes=10**7,
            request_deadline_seconds=30,
        )

    def hub(
        self,
        secret: str = SECRET,
        *,
        bc: BusinessCentral | None = None,
        renew_before: timedelta = timedelta(days=2),
    ) -> NotificationSubscriptions:
        return NotificationSubscriptions(
            bc or self.bc(),
            base_url=self.base_url,
            signer=NotificationSigner.of_secret(secret),
            per_environment=100,
            renew_before=renew_before,
        )

    async def keep(
        self,
        hub: NotificationSubscriptions,
        companies: list[Company],
        *,
        client_id: uuid.UUID = CLIENT,
        discovered: list[uuid.UUID] | None = None,
        within_seconds: float | None = None,
    ) -> None:
        async def record(event: NotificationSubscriptionsChecked) -> None:
            self.recorded.append(event)

        await hub.keep(
            self.environment,
            firm_id=FIRM,
            client_id=client_id,
            companies=companies,
            record=record,
            discovered=discovered,
            within_seconds=within_seconds,
        )

    def listed(self) -> list[dict[str, Any]]:
        with httpx.Client(base_url=f"{self.sandbox.base_url}/_sandbox", verify=self.sandbox.tls()) as admin:
            subscriptions: list[dict[str, Any]] = admin.get("/webhooks/subscriptions").json()["subscriptions"]
        return subscriptions

    def of(self, company: Company, secret: str = SECRET, client_id: uuid.UUID = CLIENT) -> list[dict[str, Any]]:
        key = NotificationSigner.of_secret(secret).key(CompanyAddress(FIRM, client_id, company.id))
        return [s for s in self.listed() if s["notification_url"] == f"{self.base_url}/{key}"]

    def behave(self, company: Company, behaviour: Behaviour) -> None:
        self.subscriber.url(f"hub/{self.key(company)}", behaviour)

    def key(self, company: Company) -> str:
        return NotificationSigner.of_secret(SECRET).key(CompanyAddress(FIRM, CLIENT, company.id))

    def handshakes_of(self, company: Company) -> int:
        with self.subscriber.lock:
            return sum(1 for path, _, _ in self.subscriber.handshakes if path == f"/hooks/hub/{self.key(company)}")


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    with running_subscriber() as running:
        yield running


@pytest.fixture
async def bc_side(sandbox: Sandbox, subscriber: Subscriber) -> AsyncIterator[Environmentals]:
    with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls()) as admin:
        admin.delete("/webhooks/subscriptions").raise_for_status()
        tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    companies = [Company(id=uuid.UUID(c["id"]), name=c["name"]) for c in production["companies"]]
    assert len(companies) >= 2
    async with sandbox_tokens(sandbox) as (http, tokens):
        try:
            yield Environmentals(
                sandbox, subscriber, http, tokens, Environment(tenant=tenant["domain"], name="Production"), companies
            )
        finally:
            subscriber.behaviours.clear()


async def test_subscriptions_no_company_will_renew_are_deleted_and_other_apps_are_left(
    bc_side: Environmentals,
) -> None:
    first, second = bc_side.companies[:2]
    # The second company under this client, and under another client of the same firm.
    other_client = uuid.uuid4()
    await bc_side.keep(bc_side.hub(), [second])
    await bc_side.keep(bc_side.hub(), [second], client_id=other_client)
    bc = bc_side.bc()
    # Made before HUB_SECRET_KEY was rotated: their key no longer verifies.
    old_signer = NotificationSigner.of_secret(OLD_SECRET)
    old_address = CompanyAddress(FIRM, CLIENT, first.id)
    for entity in NOTIFIED_ENTITIES:
        made = await bc.write(
            bc_side.environment,
            "POST",
            f"{bc.root(bc_side.environment)}/subscriptions",
            json_body={
                "notificationUrl": notification_url(bc_side.base_url, old_signer, old_address),
                "resource": f"/api/v2.0/companies({first.id})/{entity}",
                "clientState": old_signer.client_state(old_address, entity),
            },
        )
        assert made.status == 201
    # Another app's, under an address that merely starts like the hub's.
    other_app = await bc.write(
        bc_side.environment,
        "POST",
        f"{bc.root(bc_side.environment)}/subscriptions",
        json_body={
            "notificationUrl": f"{bc_side.base_url}-elsewhere/theirs",
            "resource": f"/api/v2.0/companies({first.id})/customers",
        },
    )
    assert other_app.status == 201
    assert len(bc_side.of(first, OLD_SECRET)) == len(NOTIFIED_ENTITIES)

    # A refresh of one company: the client's other companies are not its business.
    await bc_side.keep(bc_side.hub(), [first])
    assert bc_side.of(first, OLD_SECRET) == []
    assert len(bc_side.of(first)) == len(NOTIFIED_ENTITIES)
    assert len(bc_side.of(second)) == len(NOTIFIED_ENTITIES)

    # A refresh of the whole client that no longer finds the second company.
    await bc_side.keep(bc_side.hub(), [first], discovered=[first.id])
    assert bc_side.of(second) == []
    assert len(bc_side.of(first)) == len(NOTIFIED_ENTITIES)
    assert len(bc_side.of(second, client_id=other_client)) == len(NOTIFIED_ENTITIES)
    assert [s["notification_url"] for s in bc_side.listed() if "-elsewhere/" in s["notification_url"]] == [
        f"{bc_side.base_url}-elsewhere/theirs"
    ]


async def test_a_client_with_no_company_left_gives_back_its_subscriptions(bc_side: Environmentals) -> None:
    first = bc_side.companies[0]
    await bc_side.keep(bc_side.hub(), [first])
    await bc_side.keep(bc_side.hub(), [], discovered=[])
    assert bc_side.of(first) == []


async def test_another_apps_odd_subscription_does_not_fail_the_hubs(bc_side: Environmentals) -> None:
    first = bc_side.companies[0]
    bc = bc_side.bc()
    # Longer than any address the hub reads: it would not pass as one of the hub's.
    odd = await bc.write(
        bc_side.environment,
        "POST",
        f"{bc.root(bc_side.environment)}/subscriptions",
        json_body={
            "notificationUrl": f"{bc_side.subscriber.base_url}/hooks/another-app/{'x' * 4100}",
            "resource": f"/api/v2.0/companies({first.id})/customers",
        },
    )
    assert odd.status == 201
    await bc_side.keep(bc_side.hub(), [first])
    assert bc_side.recorded[-1].state is NotificationState.SUBSCRIBED
    assert len(bc_side.of(first)) == len(NOTIFIED_ENTITIES)


async def test_a_subscription_bc_lists_with_an_absolute_resource_is_kept(bc_side: Environmentals) -> None:
    first = bc_side.companies[0]
    await bc_side.keep(bc_side.hub(), [first])
    sales = next(s for s in bc_side.of(first) if s["resource"].endswith("/salesInvoices"))
    bc = bc_side.bc()
    await bc.write(
        bc_side.environment,
        "DELETE",
        f"{bc.root(bc_side.environment)}/subscriptions('{sales['subscription_id']}')",
        if_match="*",
    )
    absolute = await bc.write(
        bc_side.environment,
        "POST",
        f"{bc.root(bc_side.environment)}/subscriptions",
        json_body={
            "notificationUrl": sales["notification_url"],
            "resource": f"{bc.root(bc_side.environment)}/companies({first.id})/salesInvoices",
            "clientState": sales["client_state"],
        },
    )
    assert absolute.status == 201 and absolute.document is not None
    await bc_side.keep(bc_side.hub(), [first])
    held = bc_side.of(first)
    assert absolute.document["subscriptionId"] in {s["subscription_id"] for s in held}
    assert len(held) == len(NOTIFIED_ENTITIES)


async def test_a_company_bc_will_not_give_all_five_holds_none(bc_side: Environmentals) -> None:
    first = bc_side.companies[0]
    # One of the five handshakes fails (not BC's limit): the four BC took go back.
    bc_side.behave(first, Behaviour(handshake_statuses=[500]))
    await bc_side.keep(bc_side.hub(), [first])
    assert bc_side.of(first) == []
    assert bc_side.recorded[-1].state is NotificationState.FAILED
    assert bc_side.recorded[-1].entities == []


async def test_one_gone_at_renewal_is_made_anew_all_five_or_none(bc_side: Environmentals) -> None:
    first = bc_side.companies[0]
    await bc_side.keep(bc_side.hub(), [first])
    assert len(bc_side.of(first)) == len(NOTIFIED_ENTITIES)
    # Every one is due for renewal; the first is gone by then, the other four renew (four
    # handshakes), and making the first anew fails at its handshake.
    bc_side.behave(first, Behaviour(handshake_statuses=[200, 200, 200, 200, 500]))
    bc = bc_side.bc(DeletingBeforeFirstRenewal)
    await bc_side.keep(bc_side.hub(bc=bc, renew_before=THREE_DAYS + timedelta(days=1)), [first])
    assert bc_side.of(first) == []
    assert bc_side.recorded[-1].state is NotificationState.FAILED


async def test_a_subscription_another_fetcher_renewed_a_moment_before_is_kept(bc_side: Environmentals) -> None:
    company = bc_side.companies[-1]
    bc_side.behave(company, Behaviour())
    await bc_side.keep(bc_side.hub(), [company])
    made = sorted(subscription["subscription_id"] for subscription in bc_side.of(company))
    assert len(made) == len(NOTIFIED_ENTITIES)
    bc = bc_side.bc(RenewedByAnotherFirst)
    assert isinstance(bc, RenewedByAnotherFirst)
    await bc_side.keep(bc_side.hub(bc=bc, renew_before=THREE_DAYS + timedelta(days=1)), [company])
    assert bc.renewed
    assert sorted(subscription["subscription_id"] for subscription in bc_side.of(company)) == made, "none given up"
    assert bc_side.recorded[-1].state is NotificationState.SUBSCRIBED, bc_side.recorded[-1].detail


async def test_once_bc_cannot_reach_the_hub_no_other_company_is_asked(bc_side: Environmentals) -> None:
    # Every handshake fails, as when the hub's notification address is down: the first
    # company asked costs BC's handshakes, the others share its outcome without a call.
    first, second = sorted(bc_side.companies[:2], key=lambda c: str(c.id))
    for company in (first, second):
        bc_side.behave(company, Behaviour(handshake_status=500))
    # The subscriber (and its log of handshakes) serves the whole module.
    before = {company.id: bc_side.handshakes_of(company) for company in (first, second)}
    await bc_side.keep(bc_side.hub(), [first, second])
    assert bc_side.handshakes_of(first) - before[first.id] == len(NOTIFIED_ENTITIES)
    assert bc_side.handshakes_of(second) - before[second.id] == 0
    states = {event.company_id: event.state for event in bc_side.recorded}
    assert states == {first.id: NotificationState.FAILED, second.id: NotificationState.FAILED}
    assert all("notification address" in (event.detail or "") for event in bc_side.recorded)


async def test_the_upkeep_stops_at_its_time_and_the_next_one_goes_on(bc_side: Environmentals) -> None:
    # Handshakes answered in 2 s each (within BC's wait): two companies take 4 s or more;
    # given 1 s, the upkeep stops, and the refresh would go on to read the companies.
    companies = sorted(bc_side.companies[:2], key=lambda c: str(c.id))
    for company in companies:
        bc_side.behave(company, Behaviour(handshake_delay_seconds=2.0))
    started = time.monotonic()
    await bc_side.keep(bc_side.hub(), companies, within_seconds=1.0)
    assert time.monotonic() - started < 3.0
    # BC still makes what the stopped upkeep asked for once its handshakes end; the next
    # refresh's upkeep keeps one of each and makes what is missing.
    for company in companies:
        bc_side.behave(company, Behaviour())
    await asyncio.sleep(3.0)
    await bc_side.keep(bc_side.hub(), companies)
    for company in companies:
        assert len(bc_side.of(company)) == len(NOTIFIED_ENTITIES)
