"""Alert rules (kept by the registry, asked over NATS) and the alerts they raised (the read model).

Every accountant defines rules for themselves; owners and admins also see, change and remove
their colleagues'. The registry enforces both and the firm's boundary: another firm's rule
or client answers 404.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Header, Query, Request, Response
from fastapi import status as http_status

from hub_common import commands
from hub_gateway.alerts import queries
from hub_gateway.alerts.queries import AlertMarkers, Alerts, AlertStatus
from hub_gateway.dependencies import (
    CurrentPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    send_command,
)
from hub_gateway.languages import request_language

alerts_api = feature_api("alerts")


@alerts_api.get("/alerts")
async def recent_alerts(
    principal: CurrentPrincipal,
    session: Session,
    status: AlertStatus = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Alerts:
    """The alerts of the firm's rules, newest first: ``open`` (the rule still holds) or
    ``all`` (ended ones too, with when and why). Every accountant of the firm sees them."""
    return await queries.alerts(session, firm_id=principal.firm_id, status=status, limit=limit)


@alerts_api.get("/alerts/markers")
async def alert_markers(
    principal: CurrentPrincipal,
    session: Session,
    client_id: Annotated[list[uuid.UUID], Query(max_length=100)] = [],  # noqa: B006 (FastAPI copies it)
) -> AlertMarkers:
    """What the dashboard marks: how many alerts are open in the firm, and for each company
    of the given clients (at most 100 a request) how many are open and the newest rules'
    names. A marker without ``company_id`` is about the client as a whole."""
    return await queries.alert_markers(session, firm_id=principal.firm_id, client_ids=client_id)


@alerts_api.get("/alert-rules")
async def alert_rules(principal: CurrentPrincipal, state: State, request: Request) -> commands.AlertRuleList:
    """Your rules; an owner's or admin's: every rule of the firm."""
    command = commands.ListAlertRules(
        firm_id=principal.firm_id, actor=accountant_actor(principal), correlation_id=request.state.correlation_id
    )
    return await send_command(state, request, commands.LIST_ALERT_RULES, command, commands.AlertRuleList)


@alerts_api.post("/alert-rules", status_code=http_status.HTTP_201_CREATED)
async def create_alert_rule(
    rule: commands.AlertRuleFields,
    principal: CurrentPrincipal,
    state: State,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[!-~]+$",
            description="Any string of your own (a UUID, say), up to 255 visible ASCII characters. The same key "
            "again, from you, with the same rule, answers the rule it saved (201, its secret too while the rule "
            "is unchanged) instead of making a second one: send it again when an answer was lost. The same key "
            "with another rule is refused (422); once that rule is removed, 409.",
        ),
    ] = None,
) -> commands.AlertRuleSaved:
    """A new rule, yours. With a ``webhook_url`` the answer carries the webhook's signing
    secret: shown this once, keep it."""
    return await _save(state, request, principal, rule, rule_id=None, creation_key=idempotency_key)


@alerts_api.put("/alert-rules/{rule_id}")
async def change_alert_rule(
    rule_id: uuid.UUID, rule: commands.AlertRuleChange, principal: CurrentPrincipal, state: State, request: Request
) -> commands.AlertRuleSaved:
    """Change a rule. A changed figure, comparison or client ends its open alerts. A changed
    ``webhook_url`` gives up the alerts still queued for the old one and gets a new signing
    secret, in the answer: shown this once, keep it. ``new_webhook_secret`` gives the same
    URL a new secret (a leaked one), answered the same way; it signs what is still queued."""
    return await _save(
        state,
        request,
        principal,
        commands.AlertRuleFields.model_validate(rule.model_dump(exclude={"new_webhook_secret"})),
        rule_id=rule_id,
        new_webhook_secret=rule.new_webhook_secret,
    )


@alerts_api.delete("/alert-rules/{rule_id}", status_code=http_status.HTTP_204_NO_CONTENT)
async def remove_alert_rule(
    rule_id: uuid.UUID, principal: CurrentPrincipal, state: State, request: Request
) -> Response:
    """Remove a rule; its open alerts end."""
    command = commands.RemoveAlertRule(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        rule_id=rule_id,
    )
    await send_command(state, request, commands.REMOVE_ALERT_RULE, command, commands.AlertRuleRemovedResult)
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)


async def _save(
    state: State,
    request: Request,
    principal: CurrentPrincipal,
    rule: commands.AlertRuleFields,
    *,
    rule_id: uuid.UUID | None,
    new_webhook_secret: bool = False,
    creation_key: str | None = None,
) -> commands.AlertRuleSaved:
    command = commands.SetAlertRule(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        rule_id=rule_id,
        rule=rule,
        # The rule's mail is written in its owner's language, as the hub speaks to them now.
        language=request_language(request),
        new_webhook_secret=True if new_webhook_secret else None,
        creation_key=creation_key,
        # A webhook posts the firm's figures for as long as its rule lasts: with a token, a
        # rule keeps the webhook it has or drops it (the registry checks, on the rule locked).
        webhook_may_change=getattr(request.state, "api_token", None) is None,
    )
    return await send_command(state, request, commands.SET_ALERT_RULE, command, commands.AlertRuleSaved)
