"""What to do with one company's BC webhook subscriptions: pure rules, no I/O.

The fetcher lists the hub app's subscriptions in an environment (BC keeps them, so the
fetcher keeps nothing), and for each company it has just read decides which to create,
renew or delete, within the hub's share of BC's 200 subscriptions per environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub_common.events import NotificationState


@dataclass(frozen=True)
class Subscription:
    """One of the hub app's subscriptions as BC lists it."""

    subscription_id: str
    notification_url: str
    # The entity set it watches ("salesInvoices"), and the company, read from its resource.
    entity: str | None
    company_id: str | None
    expires_at: datetime
    etag: str | None


@dataclass(frozen=True)
class Plan:
    state: NotificationState
    create: tuple[str, ...] = ()
    renew: tuple[Subscription, ...] = ()
    delete: tuple[Subscription, ...] = ()
    # The subscriptions that stay as they are.
    keep: tuple[Subscription, ...] = ()
    detail: str | None = None

    @property
    def changes_anything(self) -> bool:
        return bool(self.create or self.renew or self.delete)


@dataclass(frozen=True)
class CompanyWanted:
    company_id: str
    notification_url: str
    entities: tuple[str, ...]


@dataclass
class Budget:
    """The hub's share of the environment's subscriptions. ``used`` counts every subscription
    of the hub there, the planned company's own included; each plan leaves it as the
    company will hold."""

    limit: int
    used: int = 0


def plan_company(
    wanted: CompanyWanted,
    ours: Sequence[Subscription],
    *,
    budget: Budget,
    now: datetime,
    renew_before: timedelta,
) -> Plan:
    """The actions for one company. ``ours`` are the subscriptions for this company's
    notification URL (any entity).

    A company gets all its entities or none: notified of half its changes it would look
    fresh while it is not, so where the share binds it is read on schedule instead, and
    gives back what it holds.
    """
    others = budget.used - len(ours)
    needed = len(wanted.entities)
    if others + needed > budget.limit:
        budget.used = others
        budget_detail = (
            f"the hub's share of the environment's subscriptions is used up ({others} of {budget.limit}); "
            "this company is read on its schedule"
        )
        return Plan(state=NotificationState.POLLING, delete=tuple(ours), detail=budget_detail)
    delete: list[Subscription] = []
    current: dict[str, Subscription] = {}
    # The latest-expiring one of each wanted entity stays; duplicates (two refreshes that
    # subscribed at once) and entities no longer wanted go.
    for subscription in sorted(ours, key=lambda s: s.expires_at, reverse=True):
        if subscription.entity not in wanted.entities or subscription.entity in current:
            delete.append(subscription)
        else:
            current[subscription.entity] = subscription
    live = {entity: s for entity, s in current.items() if s.expires_at > now}
    missing = [entity for entity in wanted.entities if entity not in live]
    budget.used = others + needed
    renew = tuple(s for s in live.values() if s.expires_at - now < renew_before)
    keep = tuple(s for s in live.values() if s not in renew)
    # An expired one BC still lists is recreated, not renewed.
    delete.extend(s for entity, s in current.items() if entity not in live)
    return Plan(
        state=NotificationState.SUBSCRIBED,
        create=tuple(missing),
        renew=renew,
        delete=tuple(delete),
        keep=keep,
    )
