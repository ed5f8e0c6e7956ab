"""Alert rules, their episodes and their deliveries (the rules themselves: domain/alerts.py).

Who may do what: every accountant defines rules for themselves (their mail goes to them);
owners and admins also see, change and remove every rule of their firm. A rule only ever
sees its own firm's clients, and another firm's rule or client answers "not found".

What starts and ends an episode: each CompanySnapshot (the registry's snapshots consumer),
each RefreshFailed (the start of a failure, for "failing for more than Z hours"), and the
lease holder's periodic check of failures against the clock. Each episode's start is one
AlertRaised (mailed by the invitations service, at once or in the rule's daily digest) and
one webhook delivery row written in the same transaction; its end is one AlertResolved.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy
from sqlalchemy import ColumnElement, case, delete, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common import outbox
from hub_common.commands import (
    AlertRuleFields,
    AlertRuleList,
    AlertRuleSaved,
    AlertRuleView,
    ListAlertRules,
    RejectionReason,
    RemoveAlertRule,
    SetAlertRule,
    WebhookDeliveries,
    refused,
)
from hub_common.db import lock_until_commit
from hub_common.events import (
    Actor,
    AlertDigestDue,
    AlertRaised,
    AlertRecipient,
    AlertResolved,
    AlertRuleRemoved,
    AlertRuleSet,
    CompaniesDiscovered,
    CompanySnapshot,
    DigestEpisode,
    Envelope,
    EventData,
    RefreshFailed,
    Role,
    new_envelope,
)
from hub_common.i18n import N_, language_of
from hub_common.money import stored_number
from hub_common.purpose_keys import Purpose
from hub_common.sealing import Sealer, Unsealable
from hub_common.settings import InsecureSettings
from hub_registry import webhooks
from hub_registry.domain.alerts import (
    Change,
    Comparison,
    Condition,
    Delivery,
    DigestSchedule,
    EpisodeChange,
    Figure,
    InvalidRule,
    Observation,
    Rule,
    Subject,
    checked_time_zone,
    digest_due,
    evaluate,
    failing_hours,
    observations_of_snapshot,
)
from hub_registry.models import (
    WHOLE_CLIENT,
    Accountant,
    AlertEpisodeRow,
    AlertFailureRow,
    AlertPositionRow,
    AlertRuleRow,
    AlertWebhookDelivery,
    Client,
    registry_outbox,
)
from hub_registry.service.shared import Context, acting_accountant, emit, live_client, read_the_place_before
from hub_registry.settings import RegistrySettings

ALERTS_ACTOR = Actor.service("registry-alerts")
# Every snapshot of a firm is weighed against each of its rules: a bound keeps that cheap.
MAX_RULES_PER_FIRM = 500
# The purpose the webhook secrets are sealed under (hub_common.sealing).
WEBHOOK_SECRETS = "alert-webhook-secrets"


# Why a pending webhook delivery was given up without being sent (its ``last_error``).
WEBHOOK_URL_CHANGED = "not sent: the rule's webhook URL changed or was removed before it went out"
WEBHOOK_RULE_REMOVED = "not sent: the rule was removed before it went out"
WEBHOOK_CLIENT_REMOVED = "not sent: the client was removed before it went out"
# The longest wait between two attempts of a delivery, whatever a receiver asks.
WEBHOOK_LONGEST_WAIT_SECONDS = 3600.0


def sealer(settings: RegistrySettings) -> Sealer:
    return Sealer(settings.key_for(Purpose.WEBHOOK_SECRETS))


def _company_key(company_id: uuid.UUID | None) -> str:
    return str(company_id) if company_id is not None else WHOLE_CLIENT


def _subject_of(client_id: uuid.UUID, company_key: str) -> Subject:
    return Subject(client_id, None if company_key == WHOLE_CLIENT else uuid.UUID(company_key))


def _rule_of(row: AlertRuleRow) -> Rule:
    return Rule(
        row.id,
        row.firm_id,
        row.client_id,
        Condition(Figure(row.figure), Comparison(row.comparison), stored_number(row.threshold)),
    )


# ---------------------------------------------------------------- commands


def _member(accountant: Accountant | None, firm_id: uuid.UUID) -> Accountant | None:
    """A rule's owner while a member of the rule's firm: a rule left behind by a removal
    (saved as it happened) neither raises alerts nor mails anyone."""
    if accountant is None or accountant.removed_at is not None or accountant.firm_id != firm_id:
        return None
    return accountant


def _manages_all(accountant: Accountant) -> bool:
    return accountant.role in (Role.OWNER.value, Role.ADMIN.value)


# A webhook posts the firm's figures for as long as its rule lasts: a leaked API token must
# not be able to name one, nor learn its secret (SetAlertRule.webhook_may_change).
_WEBHOOK_BY_TOKEN = N_("A webhook is set when signed in to the hub, not with an API token")


async def _visible_rule(session: AsyncSession, accountant: Accountant, rule_id: uuid.UUID) -> AlertRuleRow:
    """A live rule of the accountant's firm they may manage; anything else is "not found"
    (another firm's rule, or for staff a colleague's, is not theirs to know of)."""
    # Locked (PostgreSQL): an edit or a removal waits for evaluations holding the rule
    # (``_live_rules``), so the episodes it ends include the ones they start.
    row = await session.get(AlertRuleRow, rule_id, with_for_update=True)
    if (
        row is None
        or row.removed_at is not None
        or row.firm_id != accountant.firm_id
        or (not _manages_all(accountant) and row.owner_accountant_id != accountant.id)
    ):
        raise refused(RejectionReason.NOT_FOUND, N_("No such alert rule"), "rule_id")
    return row


def _checked_condition(fields: AlertRuleFields) -> Condition:
    """The rule's condition, its time zone and its digest checked, or a refusal naming the field."""
    try:
        condition = Condition(Figure(fields.figure), Comparison(fields.comparison), fields.threshold)
        checked_time_zone(fields.time_zone)
        if fields.delivery == Delivery.DAILY_DIGEST.value:
            if fields.digest_at is None:
                raise InvalidRule("digest_at", N_("a daily digest needs its time of day"))
            DigestSchedule(fields.digest_at, fields.time_zone)
    except InvalidRule as error:
        raise refused(RejectionReason.INVALID, error.message, error.field, **error.values) from error
    if not fields.email and fields.webhook_url is None:
        raise refused(RejectionReason.INVALID, N_("An alert is mailed, sent to a webhook, or both"), "email")
    return condition


# How long saving a rule waits for its webhook host's name lookup.
SAVE_LOOKUP_SECONDS = 5.0


async def check_webhook_host(command: SetAlertRule, settings: RegistrySettings) -> webhooks.UnsafeWebhook | None:
    """Why the rule's webhook URL may not be posted to (its host looked up), or None.

    Run before the save takes its place among the registry's transactions
    (``serve_prepared_in_transaction``): a host whose name server is slow holds the save for
    up to SAVE_LOOKUP_SECONDS, and held inside, a few firms saving such rules would take
    every place the other firms' commands wait for. The verdict is said only where the save
    needs it: a creation answered again, as the first time, does not depend on it."""
    if command.rule.webhook_url is None:
        return None
    try:
        await webhooks.resolve_target(
            command.rule.webhook_url,
            allow_loopback=settings.alert_webhook_allow_loopback,
            firm=str(command.firm_id),
            timeout_seconds=min(SAVE_LOOKUP_SECONDS, settings.alert_webhook_timeout_seconds),
        )
    except webhooks.UnsafeWebhook as error:
        return error
    return None


async def set_alert_rule(
    *,
    session: AsyncSession,
    command: SetAlertRule,
    settings: RegistrySettings,
    webhook_refused: webhooks.UnsafeWebhook | None,
) -> AlertRuleSaved:
    """Create or change a rule; ``webhook_refused`` is ``check_webhook_host``'s verdict."""
    fields = command.rule
    condition = _checked_condition(fields)
    accountant = await acting_accountant(session, command.firm_id, command.actor)
    fingerprint = _fingerprint_of(fields)
    if command.rule_id is None and not command.webhook_may_change and fields.webhook_url is not None:
        # Before the Idempotency-Key's replay too, which answers a saved rule's secret.
        raise refused(RejectionReason.FORBIDDEN, _WEBHOOK_BY_TOKEN, "webhook_url")
    if command.rule_id is None and command.creation_key is not None:
        saved = await _saved_before(session, accountant.id, command, fingerprint, settings)
        if saved is not None:
            # Answered as the first time, without asking the webhook's host name again.
            return saved
    if fields.webhook_url is not None:
        try:
            settings.require_key_for(Purpose.WEBHOOK_SECRETS)
        except InsecureSettings as error:
            # A secret sealed under the public default key would be no secret at rest.
            raise refused(
                RejectionReason.UNAVAILABLE,
                N_("This hub cannot keep webhook secrets yet: its operator must set HUB_SECRET_KEY"),
                "webhook_url",
            ) from error
        if isinstance(webhook_refused, webhooks.LookupsBusy):
            raise refused(RejectionReason.RATE_LIMITED, webhook_refused.message, "webhook_url") from webhook_refused
        if webhook_refused is not None:
            raise refused(
                RejectionReason.INVALID, webhook_refused.message, "webhook_url", **webhook_refused.values
            ) from webhook_refused
    if fields.client_id is not None:
        await live_client(session, command.firm_id, fields.client_id)
    now = datetime.now(UTC)
    if command.rule_id is None:
        # A firm's new rules one at a time, or replicas each count the others' before its own.
        await lock_until_commit(session, f"alert-rules:{command.firm_id}")
        if command.creation_key is not None:
            # The same ask, taken by another replica while this one looked its webhook up.
            saved = await _saved_before(session, accountant.id, command, fingerprint, settings)
            if saved is not None:
                return saved
        live = await session.execute(
            select(func.count())
            .select_from(AlertRuleRow)
            .where(col(AlertRuleRow.firm_id) == command.firm_id, col(AlertRuleRow.removed_at).is_(None))
        )
        if live.scalar_one() >= MAX_RULES_PER_FIRM:
            raise refused(
                RejectionReason.CONFLICT,
                N_("A firm keeps at most %(count)s alert rules; remove one first"),
                count=MAX_RULES_PER_FIRM,
            )
        row = AlertRuleRow(
            firm_id=command.firm_id,
            owner_accountant_id=accountant.id,
            name=fields.name,
            figure=condition.figure.value,
            comparison=condition.comparison.value,
            threshold=str(condition.threshold),
            last_digest_at=now,
            created_at=now,
            creation_key=command.creation_key,
            creation_fingerprint=fingerprint if command.creation_key is not None else None,
        )
    else:
        row = await _visible_rule(session, accountant, command.rule_id)
        if (row.figure, row.comparison, row.client_id) != (
            condition.figure.value,
            condition.comparison.value,
            fields.client_id,
        ):
            # What the open episodes were about is no longer watched: they end here, and the
            # next observation starts afresh under the new condition.
            await _end_open_episodes(
                session, Context.of(command), col(AlertEpisodeRow.rule_id) == row.id, reason="rule_changed", now=now
            )
    if not command.webhook_may_change and (
        command.new_webhook_secret or (fields.webhook_url is not None and fields.webhook_url != row.webhook_url)
    ):
        # Checked here, on the rule as locked: a URL changed by someone signed in a moment
        # before is not taken back by the token (with a new secret for it).
        raise refused(RejectionReason.FORBIDDEN, _WEBHOOK_BY_TOKEN, "webhook_url")
    secret: str | None = None
    renewed = False
    if fields.webhook_url != row.webhook_url:
        # What was queued for the old URL was meant for whoever the rule named then, and its
        # signature for that receiver: it is not sent on, and a new URL gets a new secret.
        await _give_up_pending_deliveries(session, row.id, reason=WEBHOOK_URL_CHANGED, now=now)
        row.webhook_secret_sealed = None
    elif command.new_webhook_secret and row.webhook_url is not None:
        # The same receiver, a new secret: what is still queued for it is sent on, signed with
        # the new one (a delivery's secret is read as it is sent).
        row.webhook_secret_sealed = None
        renewed = True
    if fields.webhook_url is not None and row.webhook_secret_sealed is None:
        secret = webhooks.new_secret()
        row.webhook_secret_sealed = sealer(settings).seal(secret, context=str(row.id))
    digested_before = row.email and row.delivery == Delivery.DAILY_DIGEST.value
    digested_after = fields.email and fields.delivery == Delivery.DAILY_DIGEST.value
    condition_changed = command.rule_id is not None and (
        row.figure,
        row.comparison,
        stored_number(row.threshold),
        row.client_id,
    ) != (condition.figure.value, condition.comparison.value, condition.threshold, fields.client_id)
    if digested_before and (not digested_after or condition_changed):
        # Alerts started under the digest are waiting for it: mailed now, as the digest they
        # were promised, about the rule as it was when they started (a digest names the rule's
        # figure and threshold, which would otherwise be the new ones), unless the mail is
        # turned off.
        async def emit_digest(digest: AlertDigestDue) -> object:
            return await emit(session, Context.of(command), digest)

        if fields.email:
            await _digest_pending(session, row, since=row.last_digest_at, until=now, emit_digest=emit_digest)
        else:
            await session.execute(
                update(AlertEpisodeRow)
                .where(col(AlertEpisodeRow.rule_id) == row.id, col(AlertEpisodeRow.digest_pending).is_(True))
                .values(digest_pending=False)
                .execution_options(synchronize_session=False)
            )
    row.name = fields.name
    row.client_id = fields.client_id
    row.figure = condition.figure.value
    row.comparison = condition.comparison.value
    row.threshold = str(condition.threshold)
    row.email = fields.email
    row.webhook_url = fields.webhook_url
    if fields.delivery != row.delivery and fields.delivery == Delivery.DAILY_DIGEST.value:
        # The first digest is due at its next time of day, not at once for the days before.
        row.last_digest_at = now
    row.delivery = fields.delivery
    row.digest_at = fields.digest_at
    row.time_zone = fields.time_zone
    # The owner's language, for the owner's mail: only the owner's own change updates it.
    if row.owner_accountant_id == accountant.id:
        row.language = language_of(command.language)
    row.updated_at = now
    session.add(row)
    await session.flush()
    await _forget_unwatched_failures(session, row.firm_id)
    await emit(
        session,
        Context.of(command),
        AlertRuleSet(
            rule_id=row.id,
            owner_accountant_id=row.owner_accountant_id,
            name=row.name,
            client_id=row.client_id,
            figure=fields.figure,
            comparison=fields.comparison,
            threshold=condition.threshold,
            email=row.email,
            webhook_host=webhooks.origin(row.webhook_url) if row.webhook_url is not None else None,
            delivery=fields.delivery,
            digest_at=row.digest_at,
            time_zone=row.time_zone,
            webhook_secret_renewed=renewed,
        ),
    )
    return AlertRuleSaved(rule_id=row.id, webhook_secret=secret)


def _fingerprint_of(fields: AlertRuleFields) -> str:
    """What a new rule asks for, as a digest: the same Idempotency-Key is the same rule only
    when it asks for the same thing."""
    asked = json.dumps(fields.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(asked.encode()).hexdigest()


async def _saved_before(
    session: AsyncSession,
    accountant_id: uuid.UUID,
    command: SetAlertRule,
    fingerprint: str,
    settings: RegistrySettings,
) -> AlertRuleSaved | None:
    """The answer a new rule's save gave under this Idempotency-Key, given again (its answer
    was lost: a timeout, a dropped connection); None when the key is new."""
    earlier = (
        await session.execute(
            select(AlertRuleRow).where(
                col(AlertRuleRow.firm_id) == command.firm_id,
                col(AlertRuleRow.owner_accountant_id) == accountant_id,
                col(AlertRuleRow.creation_key) == command.creation_key,
            )
        )
    ).scalar_one_or_none()
    if earlier is None:
        return None
    if earlier.creation_fingerprint != fingerprint:
        raise refused(
            RejectionReason.INVALID,
            N_("This Idempotency-Key saved another rule: a new rule needs a new key"),
        )
    if earlier.removed_at is not None:
        raise refused(
            RejectionReason.CONFLICT,
            N_("The rule saved under this Idempotency-Key has been removed since"),
        )
    secret: str | None = None
    if earlier.updated_at == earlier.created_at and earlier.webhook_secret_sealed is not None:
        # Unchanged since it was made, so its secret is still the one the lost answer carried,
        # and whoever asks again is the one who asked (same accountant, same key).
        try:
            secret = sealer(settings).open(earlier.webhook_secret_sealed, context=str(earlier.id))
        except Unsealable:
            secret = None
    return AlertRuleSaved(rule_id=earlier.id, webhook_secret=secret)


async def remove_alert_rule(*, session: AsyncSession, command: RemoveAlertRule) -> None:
    accountant = await acting_accountant(session, command.firm_id, command.actor)
    row = await _visible_rule(session, accountant, command.rule_id)
    await _remove_rule(session, Context.of(command), row, now=datetime.now(UTC))
    await session.flush()
    await _forget_unwatched_failures(session, row.firm_id)


async def _remove_rule(session: AsyncSession, context: Context, rule: AlertRuleRow, *, now: datetime) -> None:
    """A rule goes with its open alerts and the webhook deliveries not sent yet."""
    # Locked first (PostgreSQL): an evaluation holding the rule (``_live_rules``) commits the
    # episode it starts before the open ones are ended here, so that one ends too.
    await session.refresh(rule, with_for_update=True)
    if rule.removed_at is not None:
        return  # removed meanwhile, with its episodes
    await _end_open_episodes(session, context, col(AlertEpisodeRow.rule_id) == rule.id, reason="rule_removed", now=now)
    await _give_up_pending_deliveries(session, rule.id, reason=WEBHOOK_RULE_REMOVED, now=now)
    rule.removed_at = now
    session.add(rule)
    await emit(session, context, AlertRuleRemoved(rule_id=rule.id))


async def forget_client(session: AsyncSession, context: Context, client_id: uuid.UUID, *, now: datetime) -> None:
    """A removed client: its open alerts end, and the rules watching only it go with it
    (they could never hold again). Called in the removal's transaction."""
    # The client's own rules locked before its episodes end, as in ``_remove_rule``.
    rules = list(
        (
            await session.execute(
                select(AlertRuleRow)
                .where(col(AlertRuleRow.client_id) == client_id, col(AlertRuleRow.removed_at).is_(None))
                .order_by(col(AlertRuleRow.id))
                .with_for_update()
            )
        ).scalars()
    )
    await _end_open_episodes(
        session, context, col(AlertEpisodeRow.client_id) == client_id, reason="client_removed", now=now
    )
    # Nor are they listed in a rule's next daily digest.
    await session.execute(
        update(AlertEpisodeRow)
        .where(col(AlertEpisodeRow.client_id) == client_id, col(AlertEpisodeRow.digest_pending).is_(True))
        .values(digest_pending=False)
        .execution_options(synchronize_session=False)
    )
    # Alerts about it that a rule for every client raised, not sent yet: the firm removed
    # the client, and its figures no longer go anywhere (a delivery's id is its alert's).
    await session.execute(
        update(AlertWebhookDelivery)
        .where(
            col(AlertWebhookDelivery.id).in_(
                select(col(AlertEpisodeRow.raised_event_id)).where(col(AlertEpisodeRow.client_id) == client_id)
            ),
            col(AlertWebhookDelivery.delivered_at).is_(None),
            col(AlertWebhookDelivery.failed_at).is_(None),
        )
        .values(failed_at=now, last_error=WEBHOOK_CLIENT_REMOVED, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    for rule in rules:
        await _give_up_pending_deliveries(session, rule.id, reason=WEBHOOK_RULE_REMOVED, now=now)
        rule.removed_at = now
        session.add(rule)
        await emit(session, context, AlertRuleRemoved(rule_id=rule.id))
    # Nothing watches a removed client's failures any more.
    await session.execute(
        delete(AlertFailureRow)
        .where(col(AlertFailureRow.client_id) == client_id)
        .execution_options(synchronize_session=False)
    )


async def on_companies_discovered(*, session: AsyncSession, discovered: Envelope[CompaniesDiscovered]) -> None:
    """A full discovery lists every company the client's BC has now: the alerts of those it
    no longer lists end (a company deleted, or the hub's access to it withdrawn)."""
    data = discovered.data
    if data.refresh_company_id is not None:
        return  # a refresh of one company lists only that one
    client = await session.get(Client, data.client_id)
    if client is None or client.firm_id != discovered.firm_id or client.removed_at is not None:
        return
    if read_the_place_before(client, data.accounts_revision):
        return  # what the card named before a move lists, not this client's companies
    context = Context(firm_id=client.firm_id, actor=ALERTS_ACTOR, correlation_id=discovered.correlation_id)
    listed = {company.company_id for company in data.companies}
    await forget_companies(session, context, client, listed=listed, at=discovered.occurred_at)


async def forget_companies(
    session: AsyncSession,
    context: Context,
    client: Client,
    *,
    listed: Collection[uuid.UUID] | None,
    at: datetime,
) -> None:
    """Companies no longer the client's: those a full discovery at ``at`` did not list
    (``listed``), or every one when the card moved to another tenant or environment at
    ``at`` (``listed`` None). Their open alerts end (``company_gone``), their failures are
    forgotten, and a snapshot of theirs read before ``at`` is history: evaluated, it would
    raise an alert again for a company nobody can see."""
    # The rules first, as on every path that ends episodes or forgets failures.
    await _live_rules(session, client.firm_id, client.id)
    episodes = col(AlertEpisodeRow.client_id) == client.id
    failures = delete(AlertFailureRow).where(col(AlertFailureRow.client_id) == client.id)
    if listed is not None:
        # The client as a whole stays (its discovery worked); only the unlisted companies go.
        kept = [WHOLE_CLIENT, *(_company_key(company_id) for company_id in listed)]
        episodes = episodes & col(AlertEpisodeRow.company_key).not_in(kept)
        failures = failures.where(col(AlertFailureRow.company_key).not_in(kept))
    # Failures, positions, then episodes: the order a snapshot's evaluation takes them in,
    # so the two never wait on each other in a cycle.
    await session.execute(failures.execution_options(synchronize_session=False))
    positions = select(AlertPositionRow).where(col(AlertPositionRow.client_id) == client.id)
    if listed is not None:
        positions = positions.where(col(AlertPositionRow.company_id).not_in(list(listed)))
    for position in (await session.execute(positions)).scalars():
        if position.read_at < at:
            position.read_at, position.accounts_revision = at, max(position.accounts_revision, client.accounts_revision)
            session.add(position)
    await session.flush()
    await _end_open_episodes(session, context, episodes, reason="company_gone", now=datetime.now(UTC))


async def forget_accountant(session: AsyncSession, context: Context, accountant: Accountant, *, now: datetime) -> int:
    """A colleague removed from the firm: their own rules go, with their open alerts and
    queued webhook deliveries, since the rules mail them and may post the firm's figures to
    a URL they chose. Returns how many rules went. Called in the removal's transaction."""
    rules = list(
        (
            await session.execute(
                select(AlertRuleRow).where(
                    col(AlertRuleRow.owner_accountant_id) == accountant.id, col(AlertRuleRow.removed_at).is_(None)
                )
            )
        ).scalars()
    )
    for rule in rules:
        await _remove_rule(session, context, rule, now=now)
    if rules:
        await session.flush()
        await _forget_unwatched_failures(session, accountant.firm_id)
    return len(rules)


async def list_alert_rules(*, session: AsyncSession, command: ListAlertRules) -> AlertRuleList:
    accountant = await acting_accountant(session, command.firm_id, command.actor)
    query = select(AlertRuleRow, Accountant.display_name).join(
        Accountant, col(Accountant.id) == col(AlertRuleRow.owner_accountant_id)
    )
    query = query.where(col(AlertRuleRow.firm_id) == command.firm_id, col(AlertRuleRow.removed_at).is_(None))
    if not _manages_all(accountant):
        query = query.where(col(AlertRuleRow.owner_accountant_id) == accountant.id)
    rows = (await session.execute(query.order_by(col(AlertRuleRow.created_at)))).all()
    open_counts = dict(
        (
            await session.execute(
                select(AlertEpisodeRow.rule_id, func.count())
                .where(col(AlertEpisodeRow.firm_id) == command.firm_id, col(AlertEpisodeRow.ended_at).is_(None))
                .group_by(col(AlertEpisodeRow.rule_id))
            )
        ).all()
    )
    deliveries = await _webhook_deliveries(session, [row for row, _ in rows if row.webhook_url is not None])
    return AlertRuleList(
        rules=[
            AlertRuleView(
                webhook_deliveries=deliveries.get(row.id),
                rule_id=row.id,
                owner_accountant_id=row.owner_accountant_id,
                owner_name=owner_name,
                open_episodes=open_counts.get(row.id, 0),
                created_at=row.created_at,
                updated_at=row.updated_at,
                name=row.name,
                client_id=row.client_id,
                figure=row.figure,
                comparison=row.comparison,
                threshold=stored_number(row.threshold),
                email=row.email,
                webhook_url=row.webhook_url,
                delivery=row.delivery,
                digest_at=row.digest_at,
                time_zone=row.time_zone,
            )
            for row, owner_name in rows
        ]
    )


async def _webhook_deliveries(session: AsyncSession, rules: list[AlertRuleRow]) -> dict[uuid.UUID, WebhookDeliveries]:
    """Each webhook rule's deliveries to the URL it names now (those for a URL it named
    before were given up when it changed, and are not this receiver's)."""
    if not rules:
        return {}
    delivery = AlertWebhookDelivery
    to_current_url = (col(delivery.rule_id) == col(AlertRuleRow.id)) & (
        col(delivery.url) == col(AlertRuleRow.webhook_url)
    )
    delivered = col(delivery.delivered_at).is_not(None)
    given_up = col(delivery.delivered_at).is_(None) & col(delivery.failed_at).is_not(None)
    waiting = col(delivery.delivered_at).is_(None) & col(delivery.failed_at).is_(None)
    rule_ids = [rule.id for rule in rules]
    counts = (
        await session.execute(
            # SQLAlchemy's own select: SQLModel's types a select of at most four columns.
            sqlalchemy.select(
                col(delivery.rule_id),
                func.sum(case((delivered, 1), else_=0)),
                func.sum(case((waiting, 1), else_=0)),
                func.sum(case((given_up, 1), else_=0)),
                func.max(delivery.delivered_at),
            )
            .select_from(delivery)
            .join(AlertRuleRow, to_current_url)
            .where(col(delivery.rule_id).in_(rule_ids))
            .group_by(col(delivery.rule_id))
        )
    ).all()
    # The newest error of each rule's deliveries not delivered: its newest moment first, then
    # the error of that moment (a rule with many failing never hides another's).
    undelivered_with_error = (
        col(delivery.rule_id).in_(rule_ids),
        col(delivery.delivered_at).is_(None),
        col(delivery.last_error).is_not(None),
    )
    moment = func.coalesce(col(delivery.failed_at), col(delivery.next_attempt_at))
    newest = (
        select(col(delivery.rule_id).label("rule_id"), func.max(moment).label("at"))
        .join(AlertRuleRow, to_current_url)
        .where(*undelivered_with_error)
        .group_by(col(delivery.rule_id))
        .subquery()
    )
    errors: dict[uuid.UUID, str] = {}
    for rule_id, error in (
        await session.execute(
            select(delivery.rule_id, delivery.last_error)
            .join(AlertRuleRow, to_current_url)
            .join(newest, (newest.c.rule_id == col(delivery.rule_id)) & (newest.c.at == moment))
            .where(*undelivered_with_error)
        )
    ).all():
        errors.setdefault(rule_id, error)
    found = {
        rule_id: WebhookDeliveries(
            delivered=int(sent or 0),
            waiting=int(queued or 0),
            given_up=int(dropped or 0),
            last_delivered_at=last,
            last_error=errors.get(rule_id),
        )
        for rule_id, sent, queued, dropped, last in counts
    }
    return {rule.id: found.get(rule.id, WebhookDeliveries(delivered=0, waiting=0, given_up=0)) for rule in rules}


# ---------------------------------------------------------------- episodes


async def _emit_caused(
    session: AsyncSession, firm_id: uuid.UUID, data: EventData, *, correlation_id: str, cause: Envelope[Any] | None
) -> Envelope[EventData]:
    envelope = new_envelope(
        data,
        firm_id=firm_id,
        actor=ALERTS_ACTOR,
        correlation_id=correlation_id if cause is None else None,
        causation=cause,
    )
    await outbox.append(session, registry_outbox, envelope)
    return envelope


async def _end_open_episodes(
    session: AsyncSession,
    context: Context,
    which: ColumnElement[bool],
    *,
    reason: Literal["rule_changed", "rule_removed", "client_removed", "company_gone"],
    now: datetime,
) -> None:
    """Open episodes ended by someone's act (a rule changed or removed, a client removed or
    moved to another environment) or by BC (a company gone), that actor theirs; ``which``
    picks them (a rule's, a client's, some companies')."""
    episodes = (
        await session.execute(select(AlertEpisodeRow).where(which, col(AlertEpisodeRow.ended_at).is_(None)))
    ).scalars()
    for episode in episodes:
        episode.ended_at = now
        session.add(episode)
        await emit(
            session,
            context,
            AlertResolved(
                episode_id=episode.id,
                rule_id=episode.rule_id,
                client_id=episode.client_id,
                company_id=_subject_of(episode.client_id, episode.company_key).company_id,
                ended_at=now,
                reason=reason,
            ),
        )


async def _give_up_pending_deliveries(session: AsyncSession, rule_id: uuid.UUID, *, reason: str, now: datetime) -> None:
    """The rule's webhook deliveries not sent yet are given up (``failed_at``, with why): a
    delivery goes to the URL it was queued for only while the rule still names it."""
    await session.execute(
        update(AlertWebhookDelivery)
        .where(
            col(AlertWebhookDelivery.rule_id) == rule_id,
            col(AlertWebhookDelivery.delivered_at).is_(None),
            col(AlertWebhookDelivery.failed_at).is_(None),
        )
        .values(failed_at=now, last_error=reason, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def _live_clients_held(
    session: AsyncSession, firm_id: uuid.UUID, client_ids: Collection[uuid.UUID]
) -> list[Client]:
    """The firm's clients among ``client_ids`` not removed, share-locked (PostgreSQL) until
    the evaluation commits: a removal at this instant either waits and then ends the
    episodes this starts, or commits first and its client is not evaluated. Without it, a
    rule for every client (which the removal does not lock) raised an alert about a client
    removed a moment before, which stayed open, mailed and posted."""
    if not client_ids:
        return []
    query = (
        select(Client)
        .where(
            col(Client.id).in_(sorted(set(client_ids))),
            col(Client.firm_id) == firm_id,
            col(Client.removed_at).is_(None),
        )
        .order_by(col(Client.id))  # one lock order on every path
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(query)).scalars())


async def _live_rules(
    session: AsyncSession, firm_id: uuid.UUID, client_id: uuid.UUID | None = None
) -> list[AlertRuleRow]:
    """The rules to evaluate, share-locked (PostgreSQL) until the evaluation commits: a rule
    removed at this instant either waits and then ends the episodes this starts, or is
    removed first and not evaluated. Without it, an alert started by an evaluation that
    read the rule just before its removal stayed open for good."""
    query = (
        select(AlertRuleRow)
        .where(col(AlertRuleRow.firm_id) == firm_id, col(AlertRuleRow.removed_at).is_(None))
        .order_by(col(AlertRuleRow.id))  # one lock order on every path
        .with_for_update(read=True)
    )
    if client_id is not None:
        query = query.where((col(AlertRuleRow.client_id).is_(None)) | (col(AlertRuleRow.client_id) == client_id))
    return list((await session.execute(query)).scalars())


async def _failures_watched_in_firm(session: AsyncSession, firm_id: uuid.UUID) -> bool:
    """Whether a live "failing for more than" rule of the firm exists (read without a lock)."""
    found = await session.execute(select(col(AlertRuleRow.id)).where(_watching_failures(firm_id)).limit(1))
    return found.first() is not None


def _watching_failures(firm_id: uuid.UUID) -> ColumnElement[bool]:
    return (
        (col(AlertRuleRow.firm_id) == firm_id)
        & col(AlertRuleRow.removed_at).is_(None)
        & (col(AlertRuleRow.figure) == Figure.FAILING_HOURS.value)
    )


async def _failures_watched(session: AsyncSession, firm_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    """Whether a live "failing for more than" rule watches the client (or all the firm's)."""
    found = await session.execute(
        select(AlertRuleRow.id)
        .where(
            _watching_failures(firm_id),
            col(AlertRuleRow.client_id).is_(None) | (col(AlertRuleRow.client_id) == client_id),
        )
        .limit(1)
    )
    return found.first() is not None


async def _last_successful_read(
    session: AsyncSession, client_id: uuid.UUID, company_id: uuid.UUID | None
) -> datetime | None:
    """The newest read evaluated of the company (of any of the client's, for the client as a
    whole): positions are kept for every client a rule watches."""
    query = select(func.max(AlertPositionRow.read_at)).where(col(AlertPositionRow.client_id) == client_id)
    if company_id is not None:
        query = query.where(col(AlertPositionRow.company_id) == company_id)
    found: datetime | None = (await session.execute(query)).scalar_one_or_none()
    return found


async def _forget_unwatched_failures(session: AsyncSession, firm_id: uuid.UUID) -> None:
    """Failure rows of clients no "failing for more than" rule watches any more go. While a
    client is unwatched its reads are not kept (no position), so a failure handled late
    could not be told from a current one; a rule that watches it again counts from its next
    failure rather than from a row that may be stale."""
    watched = (await session.execute(select(AlertRuleRow.client_id).where(_watching_failures(firm_id)))).scalars()
    watched_clients = set(watched)
    if None in watched_clients:
        return  # a rule watches every client of the firm
    await session.execute(
        delete(AlertFailureRow)
        .where(
            col(AlertFailureRow.firm_id) == firm_id,
            col(AlertFailureRow.client_id).not_in([client for client in watched_clients if client is not None]),
        )
        .execution_options(synchronize_session=False)
    )


async def _open_episodes(
    session: AsyncSession, rules: list[AlertRuleRow]
) -> dict[tuple[uuid.UUID, Subject], AlertEpisodeRow]:
    if not rules:
        return {}
    rows = (
        await session.execute(
            select(AlertEpisodeRow).where(
                col(AlertEpisodeRow.rule_id).in_([rule.id for rule in rules]), col(AlertEpisodeRow.ended_at).is_(None)
            )
        )
    ).scalars()
    return {(row.rule_id, _subject_of(row.client_id, row.company_key)): row for row in rows}


async def _apply_changes(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    rules: list[AlertRuleRow],
    changes: list[EpisodeChange],
    open_episodes: dict[tuple[uuid.UUID, Subject], AlertEpisodeRow],
    names: dict[Subject, str | None],
    currency_code: str | None,
    now: datetime,
    cause: Envelope[Any] | None,
    correlation_id: str,
) -> int:
    """Write each start and end with its event (and a start's webhook delivery); how many."""
    by_id = {rule.id: rule for rule in rules}
    clients: dict[uuid.UUID, Client | None] = {}
    for change in changes:
        rule = by_id[change.rule_id]
        if change.change is Change.ENDS:
            episode = open_episodes[(rule.id, change.subject)]
            episode.ended_at = now
            session.add(episode)
            await _emit_caused(
                session,
                firm_id,
                AlertResolved(
                    episode_id=episode.id,
                    rule_id=rule.id,
                    client_id=episode.client_id,
                    company_id=change.subject.company_id,
                    value=change.value,
                    ended_at=now,
                    reason="no_longer_holds",
                ),
                correlation_id=correlation_id,
                cause=cause,
            )
            continue
        client_id = change.subject.client_id
        if client_id not in clients:
            clients[client_id] = await session.get(Client, client_id)
        client = clients[client_id]
        owner = _member(await session.get(Accountant, rule.owner_accountant_id), firm_id)
        if client is None or client.removed_at is not None or client.firm_id != firm_id or owner is None:
            continue
        episode_id = uuid.uuid4()
        is_money = Figure(rule.figure) not in (Figure.FAILING_HOURS, Figure.RUNWAY_WEEKS)
        raised = AlertRaised(
            episode_id=episode_id,
            rule_id=rule.id,
            rule_name=rule.name,
            client_id=client.id,
            client_name=client.name,
            company_id=change.subject.company_id,
            company_name=names.get(change.subject),
            figure=rule.figure,
            comparison=rule.comparison,
            threshold=Decimal(rule.threshold),
            value=change.value,
            currency_code=currency_code if is_money else None,
            started_at=now,
            recipient=AlertRecipient(
                accountant_id=owner.id, email=owner.email, display_name=owner.display_name, language=rule.language
            ),
            email=rule.email,
            delivery=rule.delivery,
        )
        envelope = await _emit_caused(session, firm_id, raised, correlation_id=correlation_id, cause=cause)
        session.add(
            AlertEpisodeRow(
                id=episode_id,
                firm_id=firm_id,
                rule_id=rule.id,
                client_id=client.id,
                company_key=_company_key(change.subject.company_id),
                company_name=names.get(change.subject),
                value=str(change.value),
                currency_code=raised.currency_code,
                raised_event_id=envelope.id,
                started_at=now,
                # Mailed in the rule's next digest, whenever that runs (see _digest_pending).
                digest_pending=rule.email and rule.delivery == Delivery.DAILY_DIGEST.value,
            )
        )
        if rule.webhook_url is not None:
            session.add(
                AlertWebhookDelivery(
                    id=envelope.id,
                    firm_id=firm_id,
                    rule_id=rule.id,
                    url=rule.webhook_url,
                    body=webhook_body(envelope),
                    next_attempt_at=now,
                )
            )
    return len(changes)


def webhook_body(envelope: Envelope[EventData]) -> str:
    """What a webhook receives: the alert's event, without its mail recipient's address."""
    data = envelope.data.model_dump(mode="json", exclude={"recipient"})
    return json.dumps(
        {
            "id": str(envelope.id),
            "type": envelope.type,
            "firm_id": str(envelope.firm_id),
            "occurred_at": envelope.occurred_at.isoformat(),
            "data": data,
        },
        sort_keys=True,
    )


async def on_snapshot(*, session: AsyncSession, snapshot: Envelope[CompanySnapshot]) -> int:
    """Evaluate a company's snapshot against its firm's rules; how many episodes changed."""
    data = snapshot.data
    held = await _live_clients_held(session, snapshot.firm_id, [data.client_id])
    if not held:
        return 0  # removed (its alerts ended with it), or no client of this firm
    client = held[0]
    if read_the_place_before(client, data.accounts_revision):
        return 0
    # The rules next: every path takes the client's lock, then the rules', then the failure
    # rows' (a removal updates the client, locks its rules, then forgets failures), or two
    # of them could wait on each other.
    rules = await _live_rules(session, snapshot.firm_id, data.client_id)
    # A successful read ends the company's failure and the client's as a whole, watched or
    # not: a failure row left behind would count from the past for a rule added later. Only
    # a failure from before this read: one from after it (the streams keep no order between
    # them) still holds.
    await session.execute(
        delete(AlertFailureRow)
        .where(
            col(AlertFailureRow.client_id) == data.client_id,
            col(AlertFailureRow.company_key).in_([_company_key(data.company_id), WHOLE_CLIENT]),
            col(AlertFailureRow.failing_since) <= data.read_at,
        )
        .execution_options(synchronize_session=False)
    )
    if not rules:
        return 0  # the firm watches nothing here: the cheap and common case
    position = await session.get(AlertPositionRow, (data.client_id, data.company_id))
    if data.accounts_revision < client.accounts_revision:
        # Figures made with account numbers the card no longer names are not evaluated; the
        # read itself still counts as one (a failure handled later that came before it is over).
        if position is None:
            position = AlertPositionRow(
                client_id=data.client_id,
                company_id=data.company_id,
                read_at=data.read_at,
                accounts_revision=data.accounts_revision,
            )
        position.read_at = max(position.read_at, data.read_at)
        session.add(position)
        return 0
    if position is not None and (position.accounts_revision, position.read_at) >= (
        data.accounts_revision,
        data.read_at,
    ):
        return 0  # this snapshot or a newer one was evaluated already
    if position is None:
        position = AlertPositionRow(client_id=data.client_id, company_id=data.company_id, read_at=data.read_at)
    position.read_at, position.accounts_revision = data.read_at, data.accounts_revision
    session.add(position)
    watched = {Figure(rule.figure) for rule in rules}
    still_failing = [
        _subject_of(data.client_id, key)
        for key in (
            await session.execute(
                select(col(AlertFailureRow.company_key)).where(
                    col(AlertFailureRow.client_id) == data.client_id,
                    col(AlertFailureRow.company_key).in_([_company_key(data.company_id), WHOLE_CLIENT]),
                )
            )
        ).scalars()
    ]
    observations = observations_of_snapshot(data.client_id, data.company_id, data.figures, watched, still_failing)
    open_episodes = await _open_episodes(session, rules)
    changes = evaluate([_rule_of(rule) for rule in rules], snapshot.firm_id, observations, set(open_episodes))
    company = Subject(data.client_id, data.company_id)
    return await _apply_changes(
        session,
        firm_id=snapshot.firm_id,
        rules=rules,
        changes=changes,
        open_episodes=open_episodes,
        names={company: data.company_display_name or data.company_name},
        currency_code=data.currency_code,
        now=datetime.now(UTC),
        cause=snapshot,
        correlation_id=snapshot.correlation_id,
    )


async def on_refresh_failed(*, session: AsyncSession, failed: Envelope[RefreshFailed]) -> None:
    """Note when a company (or the client as a whole) started failing, for a client a
    "failing for more than" rule watches."""
    data = failed.data
    if not await _failures_watched(session, failed.firm_id, data.client_id):
        return
    if read_the_place_before(await session.get(Client, data.client_id), data.accounts_revision):
        return
    key = _company_key(data.company_id)
    if await session.get(AlertFailureRow, (data.client_id, key)) is not None:
        return  # failing already: the episode counts from the first failure
    last_read = await _last_successful_read(session, data.client_id, data.company_id)
    if last_read is not None and data.failure.occurred_at <= last_read:
        return  # a failure handled after a later success (another stream, a retry): over already
    client = await session.get(Client, data.client_id)
    if client is None or client.firm_id != failed.firm_id or client.removed_at is not None:
        return
    session.add(
        AlertFailureRow(
            client_id=data.client_id,
            company_key=key,
            firm_id=failed.firm_id,
            company_name=data.company_name,
            failing_since=data.failure.occurred_at,
        )
    )


async def check_failures(*, session: AsyncSession, now: datetime, correlation_id: str) -> int:
    """The periodic check: every failure long enough for a rule starts its episode."""
    failures = list((await session.execute(select(AlertFailureRow))).scalars())
    changed = 0
    for firm_id in sorted({failure.firm_id for failure in failures}):
        if not await _failures_watched_in_firm(session, firm_id):
            continue  # nothing to start: its clients are not held
        firm_failures = [failure for failure in failures if failure.firm_id == firm_id]
        # The clients held first, then the rules, as on every path; a client removed since
        # its failures were read is left out.
        live = {
            client.id
            for client in await _live_clients_held(session, firm_id, {failure.client_id for failure in firm_failures})
        }
        firm_failures = [failure for failure in firm_failures if failure.client_id in live]
        rules = [rule for rule in await _live_rules(session, firm_id) if rule.figure == Figure.FAILING_HOURS.value]
        if not rules or not firm_failures:
            continue
        observations = [
            Observation(
                _subject_of(failure.client_id, failure.company_key),
                Figure.FAILING_HOURS,
                failing_hours(failure.failing_since, now),
            )
            for failure in firm_failures
        ]
        open_episodes = await _open_episodes(session, rules)
        changes = [
            change
            for change in evaluate([_rule_of(rule) for rule in rules], firm_id, observations, set(open_episodes))
            if change.change is Change.STARTS  # a failure ends only with a successful read
        ]
        changed += await _apply_changes(
            session,
            firm_id=firm_id,
            rules=rules,
            changes=changes,
            open_episodes=open_episodes,
            names={_subject_of(f.client_id, f.company_key): f.company_name for f in firm_failures},
            currency_code=None,
            now=now,
            cause=None,
            correlation_id=correlation_id,
        )
    return changed


# ---------------------------------------------------------------- daily digests


# How many episodes one digest lists at most (AlertDigestDue takes up to 1000): more make
# several digests of the same run, never a silently shorter one.
DIGEST_PAGE = 500


async def _digest_pending(
    session: AsyncSession,
    rule: AlertRuleRow,
    *,
    since: datetime,
    until: datetime,
    emit_digest: Callable[[AlertDigestDue], Awaitable[object]],
) -> int:
    """List every episode of the rule still awaiting its digest, in digests of at most
    DIGEST_PAGE episodes, each episode marked as listed in the same transaction; how many
    digests. An episode whose start commits while this runs is simply listed in the next."""
    owner = _member(await session.get(Accountant, rule.owner_accountant_id), rule.firm_id)
    digests = 0
    while True:
        page = (
            await session.execute(
                select(AlertEpisodeRow, Client.name)
                .join(Client, col(Client.id) == col(AlertEpisodeRow.client_id))
                .where(
                    col(AlertEpisodeRow.rule_id) == rule.id,
                    col(AlertEpisodeRow.digest_pending).is_(True),
                    # A removed client's alerts go nowhere (its removal took them out of the
                    # digest; one waiting since before this check is left out too).
                    col(Client.removed_at).is_(None),
                )
                .order_by(col(AlertEpisodeRow.started_at), col(AlertEpisodeRow.id))
                .limit(DIGEST_PAGE)
                # Another replica listing the same rule (a switch away from the digest as it
                # runs) skips what this one holds: each episode is listed once.
                .with_for_update(skip_locked=True, of=AlertEpisodeRow)
            )
        ).all()
        if not page:
            return digests
        await session.execute(
            update(AlertEpisodeRow)
            .where(col(AlertEpisodeRow.id).in_([episode.id for episode, _ in page]))
            .values(digest_pending=False)
            .execution_options(synchronize_session=False)
        )
        if owner is None:
            continue  # nobody to mail them to
        await emit_digest(
            AlertDigestDue(
                digest_id=uuid.uuid4(),
                rule_id=rule.id,
                rule_name=rule.name,
                figure=rule.figure,
                comparison=rule.comparison,
                threshold=Decimal(rule.threshold),
                recipient=AlertRecipient(
                    accountant_id=owner.id, email=owner.email, display_name=owner.display_name, language=rule.language
                ),
                since=min(since, page[0][0].started_at),
                until=until,
                episodes=[
                    DigestEpisode(
                        episode_id=episode.id,
                        client_name=client_name,
                        company_name=episode.company_name,
                        value=Decimal(episode.value),
                        currency_code=episode.currency_code,
                        started_at=episode.started_at,
                        ended_at=episode.ended_at,
                    )
                    for episode, client_name in page
                ],
            )
        )
        digests += 1


async def send_due_digests(*, session: AsyncSession, now: datetime, correlation_id: str) -> int:
    """The AlertDigestDue of each digest rule whose time has come and that has episodes to
    list (several when they are more than one digest lists)."""
    rules = (
        await session.execute(
            select(AlertRuleRow).where(
                col(AlertRuleRow.removed_at).is_(None),
                col(AlertRuleRow.delivery) == Delivery.DAILY_DIGEST.value,
                col(AlertRuleRow.email).is_(True),
            )
        )
    ).scalars()
    sent = 0
    for rule in list(rules):
        if rule.digest_at is None:
            continue
        if not digest_due(DigestSchedule(rule.digest_at, rule.time_zone), last_sent=rule.last_digest_at, now=now):
            continue
        claimed = await session.execute(
            update(AlertRuleRow)
            .where(col(AlertRuleRow.id) == rule.id, col(AlertRuleRow.last_digest_at) == rule.last_digest_at)
            .values(last_digest_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue  # another replica took this digest

        async def emit_digest(digest: AlertDigestDue, firm_id: uuid.UUID = rule.firm_id) -> object:
            return await _emit_caused(session, firm_id, digest, correlation_id=correlation_id, cause=None)

        sent += await _digest_pending(session, rule, since=rule.last_digest_at, until=now, emit_digest=emit_digest)
    return sent


# ---------------------------------------------------------------- webhook deliveries


# What one sender has out at once, per firm and per destination (a URL's origin,
# scheme://host:port). A firm whose receivers never answer holds its few places for twice
# the webhook timeout, never every place, so the other firms' webhooks keep going out; and
# a receiver many firms share is not sent more than its few at once by the hub.
WEBHOOKS_PER_FIRM = 4
WEBHOOKS_PER_DESTINATION = 8
# Due deliveries read per claim, in turns across firms (a firm at its cap is not read): enough
# to step past those whose destination has its places taken to a firm's other receivers;
# only their ids, firms and URLs are read.
WEBHOOK_CLAIM_SCAN = 1000


async def claim_due_deliveries(
    *,
    session: AsyncSession,
    now: datetime,
    hold: timedelta,
    limit: int = 50,
    sending: Iterable[AlertWebhookDelivery] = (),
    per_firm: int = WEBHOOKS_PER_FIRM,
    per_destination: int = WEBHOOKS_PER_DESTINATION,
) -> list[AlertWebhookDelivery]:
    """Up to ``limit`` deliveries due now that no sender holds, each claimed until
    ``now + hold``, taken in turns across firms: every firm's oldest due delivery before any
    firm's second, so the thousands one firm queued do not sort before another firm's one.
    Counting what the sender has out (``sending``), a firm gets at most ``per_firm`` out at
    once and a destination at most ``per_destination``."""
    firms_out = Counter(delivery.firm_id for delivery in sending)
    destinations_out = Counter(webhooks.origin(delivery.url) for delivery in sending)
    unclaimed = [
        col(AlertWebhookDelivery.delivered_at).is_(None),
        col(AlertWebhookDelivery.failed_at).is_(None),
        col(AlertWebhookDelivery.next_attempt_at) <= now,
        or_(col(AlertWebhookDelivery.claimed_until).is_(None), col(AlertWebhookDelivery.claimed_until) <= now),
    ]
    full_firms = [firm_id for firm_id, out in firms_out.items() if out >= per_firm]
    if full_firms:
        unclaimed.append(col(AlertWebhookDelivery.firm_id).not_in(full_firms))
    turns = (
        select(
            col(AlertWebhookDelivery.id).label("id"),
            func.row_number()
            .over(partition_by=col(AlertWebhookDelivery.firm_id), order_by=col(AlertWebhookDelivery.next_attempt_at))
            .label("turn"),
        )
        .where(*unclaimed)
        .subquery()
    )
    candidates = (
        await session.execute(
            select(
                col(AlertWebhookDelivery.id),
                col(AlertWebhookDelivery.firm_id),
                col(AlertWebhookDelivery.url),
                col(AlertWebhookDelivery.attempts),
            )
            .join(turns, col(AlertWebhookDelivery.id) == turns.c.id)
            .order_by(turns.c.turn, col(AlertWebhookDelivery.next_attempt_at))
            .limit(WEBHOOK_CLAIM_SCAN)
        )
    ).all()
    claimed_ids: list[uuid.UUID] = []
    for candidate in candidates:
        if len(claimed_ids) >= limit:
            break
        destination = webhooks.origin(candidate.url)
        if firms_out[candidate.firm_id] >= per_firm or destinations_out[destination] >= per_destination:
            continue
        # The claim is checked again in the update: a sender that took the lease a moment
        # ago may have claimed it since it was read.
        taken = await session.execute(
            update(AlertWebhookDelivery)
            .where(
                col(AlertWebhookDelivery.id) == candidate.id,
                col(AlertWebhookDelivery.attempts) == candidate.attempts,
                col(AlertWebhookDelivery.delivered_at).is_(None),
                # Given up (its client removed, its rule changed) or put off since it was read:
                # not sent.
                col(AlertWebhookDelivery.failed_at).is_(None),
                col(AlertWebhookDelivery.next_attempt_at) <= now,
                or_(col(AlertWebhookDelivery.claimed_until).is_(None), col(AlertWebhookDelivery.claimed_until) <= now),
            )
            .values(claimed_until=now + hold)
            .execution_options(synchronize_session=False)
        )
        if getattr(taken, "rowcount", 0) == 1:
            claimed_ids.append(candidate.id)
            firms_out[candidate.firm_id] += 1
            destinations_out[destination] += 1
    if not claimed_ids:
        return []
    claimed = (
        await session.execute(select(AlertWebhookDelivery).where(col(AlertWebhookDelivery.id).in_(claimed_ids)))
    ).scalars()
    order = {delivery_id: position for position, delivery_id in enumerate(claimed_ids)}
    return sorted(claimed, key=lambda delivery: order[delivery.id])


async def secret_of(session: AsyncSession, delivery: AlertWebhookDelivery, settings: RegistrySettings) -> str | None:
    """The rule's signing secret; None when it has none or it does not open (HUB_SECRET_KEY
    changed since it was sealed): such a delivery cannot be signed, ever."""
    rule = await session.get(AlertRuleRow, delivery.rule_id)
    if rule is None or rule.webhook_secret_sealed is None:
        return None
    if rule.removed_at is not None or rule.webhook_url != delivery.url:
        # Claimed as the rule changed: the secret now is the new receiver's, never the old one's.
        return None
    try:
        return sealer(settings).open(rule.webhook_secret_sealed, context=str(rule.id))
    except Unsealable:
        return None


async def record_attempt(
    *,
    session: AsyncSession,
    delivery_id: uuid.UUID,
    attempt: webhooks.Attempt,
    now: datetime,
    settings: RegistrySettings,
) -> None:
    delivery = await session.get(AlertWebhookDelivery, delivery_id)
    if delivery is None or delivery.delivered_at is not None:
        return
    if delivery.failed_at is not None:
        # Given up while it was out (its rule's URL changed, or the rule went): that reason
        # stays, unless this attempt, sent before the change, did get through.
        if attempt.outcome is not webhooks.Outcome.DELIVERED:
            return
        delivery.failed_at = None
    if attempt.outcome is webhooks.Outcome.DEFERRED:
        # Not tried (the firm's lookups were all still running): its attempts stay as they
        # were, and it comes back after the first wait of a retry.
        delivery.claimed_until = None
        delivery.last_error = attempt.detail[:500]
        delivery.next_attempt_at = now + timedelta(seconds=settings.alert_webhook_retry_seconds)
        session.add(delivery)
        return
    delivery.attempts += 1
    delivery.claimed_until = None
    delivery.last_error = None if attempt.outcome is webhooks.Outcome.DELIVERED else attempt.detail[:500]
    if attempt.outcome is webhooks.Outcome.DELIVERED:
        delivery.delivered_at = now
    elif attempt.outcome is webhooks.Outcome.PERMANENT or delivery.attempts >= settings.alert_webhook_max_attempts:
        delivery.failed_at = now
    else:
        backoff = settings.alert_webhook_retry_seconds * 2 ** (delivery.attempts - 1)
        # A receiver that said when to come back (its Retry-After) is not asked sooner.
        backoff = min(WEBHOOK_LONGEST_WAIT_SECONDS, max(backoff, attempt.retry_after_seconds or 0.0))
        delivery.next_attempt_at = now + timedelta(seconds=backoff)
    session.add(delivery)
