"""The registry's command handlers (NATS request/reply from the gateway).

Each command runs in one transaction through ``CommandServer`` (hub_common.command_handling);
what is left here is which rule answers which subject, and the result it replies with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from faststream.nats import NatsBroker
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.command_handling import CommandServer
from hub_common.entra import TenantDirectory
from hub_registry import webhooks
from hub_registry.service import alerts, change_notices, clients, firms, refreshes, tenant_grants
from hub_registry.service.shared import acting_member
from hub_registry.settings import RegistrySettings

QUEUE_GROUP = "registry"


def register_command_handlers(
    broker: NatsBroker,
    sessions: async_sessionmaker[AsyncSession],
    notify_relay: Callable[[], None],
    settings: RegistrySettings,
    directory: TenantDirectory,
) -> None:
    server = CommandServer(broker, sessions, queue=QUEUE_GROUP, after_commit=notify_relay, check=acting_member)

    # ------------------------------------------------------------ firms and accountants

    async def ensure_accountant(session: AsyncSession, command: commands.EnsureAccountant) -> BaseModel:
        return await firms.ensure_accountant(session=session, command=command, settings=settings, directory=directory)

    async def list_firm_invitations(session: AsyncSession, command: commands.ListFirmInvitations) -> BaseModel:
        return await firms.list_firm_invitations(session=session, command=command, settings=settings)

    async def invite_colleague(session: AsyncSession, command: commands.InviteColleague) -> BaseModel:
        return await firms.invite_colleague(session=session, command=command, settings=settings)

    server.serve_in_transaction(commands.ENSURE_ACCOUNTANT, commands.EnsureAccountant, ensure_accountant)
    server.serve_in_transaction(commands.LIST_FIRM_INVITATIONS, commands.ListFirmInvitations, list_firm_invitations)

    async def remove_colleague(session: AsyncSession, command: commands.RemoveColleague) -> BaseModel:
        return await firms.remove_colleague(session=session, command=command)

    server.serve_in_transaction(commands.INVITE_COLLEAGUE, commands.InviteColleague, invite_colleague)
    server.serve_in_transaction(commands.REMOVE_COLLEAGUE, commands.RemoveColleague, remove_colleague)

    async def list_invitations(session: AsyncSession, command: commands.ListColleagueInvitations) -> BaseModel:
        return await firms.list_colleague_invitations(session=session, command=command, settings=settings)

    async def withdraw_invitation(session: AsyncSession, command: commands.WithdrawColleagueInvitation) -> BaseModel:
        return await firms.withdraw_colleague_invitation(session=session, command=command)

    server.serve_in_transaction(
        commands.LIST_COLLEAGUE_INVITATIONS, commands.ListColleagueInvitations, list_invitations
    )
    server.serve_in_transaction(
        commands.WITHDRAW_COLLEAGUE_INVITATION, commands.WithdrawColleagueInvitation, withdraw_invitation
    )

    # ------------------------------------------------------------ clients

    async def add_client(session: AsyncSession, command: commands.AddClient) -> BaseModel:
        client_id, granted = await clients.add_client(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ClientCreated(client_id=client_id, access_granted=granted)

    async def update_client(session: AsyncSession, command: commands.UpdateClient) -> BaseModel:
        revision = await clients.update_client(session=session, command=command, settings=settings, directory=directory)
        return commands.ClientCreated(client_id=command.client_id, card_revision=revision)

    async def remove_client(session: AsyncSession, command: commands.RemoveClient) -> BaseModel:
        await clients.remove_client(session=session, command=command)
        return commands.ClientCreated(client_id=command.client_id)

    async def set_missing_time_zones(session: AsyncSession, command: commands.SetMissingTimeZones) -> BaseModel:
        return await clients.set_missing_time_zones(session=session, command=command)

    async def test_connection(session: AsyncSession, command: commands.TestConnection) -> BaseModel:
        test_id = await clients.test_connection(
            session=session, command=command, settings=settings, directory=directory
        )
        return commands.ConnectionTestStarted(test_id=test_id)

    server.serve_in_transaction(commands.ADD_CLIENT, commands.AddClient, add_client)
    server.serve_in_transaction(commands.UPDATE_CLIENT, commands.UpdateClient, update_client)
    server.serve_in_transaction(commands.REMOVE_CLIENT, commands.RemoveClient, remove_client)
    server.serve_in_transaction(commands.SET_MISSING_TIME_ZONES, commands.SetMissingTimeZones, set_missing_time_zones)
    server.serve_in_transaction(commands.TEST_CONNECTION, commands.TestConnection, test_connection)

    # ------------------------------------------------------------ refreshes

    async def set_refresh_schedule(session: AsyncSession, command: commands.SetRefreshSchedule) -> BaseModel:
        await refreshes.set_refresh_schedule(session=session, command=command)
        return commands.RefreshScheduleSaved()

    async def request_refresh(session: AsyncSession, command: commands.RequestRefresh) -> BaseModel:
        asked = await refreshes.request_refresh(session=session, command=command)
        return commands.RefreshStarted(
            refresh_ids=asked.started, on_their_way=asked.on_their_way, not_started=asked.not_started
        )

    async def record_changes(session: AsyncSession, command: commands.RecordBusinessCentralChanges) -> BaseModel:
        refresh_id = await change_notices.record_changes(
            session=session,
            command=command,
            coalesce=timedelta(seconds=settings.notification_coalesce_seconds),
            now=datetime.now(UTC),
        )
        return commands.ChangesRecorded(refresh_id=refresh_id)

    server.serve_in_transaction(commands.REQUEST_REFRESH, commands.RequestRefresh, request_refresh)
    server.serve_in_transaction(
        commands.RECORD_BUSINESS_CENTRAL_CHANGES, commands.RecordBusinessCentralChanges, record_changes
    )
    server.serve_in_transaction(commands.SET_REFRESH_SCHEDULE, commands.SetRefreshSchedule, set_refresh_schedule)

    # ------------------------------------------------------------ tenant grants

    async def grant_access(session: AsyncSession, command: commands.GrantTenantAccess) -> BaseModel:
        return await tenant_grants.grant_tenant_access(session=session, command=command)

    async def revoke_access(session: AsyncSession, command: commands.RevokeTenantAccess) -> BaseModel:
        return await tenant_grants.revoke_tenant_access(session=session, command=command)

    async def list_grants(session: AsyncSession, command: commands.ListTenantGrants) -> BaseModel:
        return await tenant_grants.list_tenant_grants(session=session, command=command)

    async def withdraw_access(session: AsyncSession, command: commands.WithdrawTenantAccess) -> BaseModel:
        return await tenant_grants.withdraw_tenant_access(session=session, command=command)

    server.serve_in_transaction(commands.GRANT_TENANT_ACCESS, commands.GrantTenantAccess, grant_access)
    server.serve_in_transaction(commands.REVOKE_TENANT_ACCESS, commands.RevokeTenantAccess, revoke_access)
    server.serve_in_transaction(commands.LIST_TENANT_GRANTS, commands.ListTenantGrants, list_grants)
    server.serve_in_transaction(commands.WITHDRAW_TENANT_ACCESS, commands.WithdrawTenantAccess, withdraw_access)

    # ------------------------------------------------------------ alert rules

    async def check_webhook_host(command: commands.SetAlertRule) -> webhooks.UnsafeWebhook | None:
        return await alerts.check_webhook_host(command, settings)

    async def set_alert_rule(
        session: AsyncSession, command: commands.SetAlertRule, webhook_refused: webhooks.UnsafeWebhook | None
    ) -> BaseModel:
        return await alerts.set_alert_rule(
            session=session, command=command, settings=settings, webhook_refused=webhook_refused
        )

    async def remove_alert_rule(session: AsyncSession, command: commands.RemoveAlertRule) -> BaseModel:
        await alerts.remove_alert_rule(session=session, command=command)
        return commands.AlertRuleRemovedResult(rule_id=command.rule_id)

    async def list_alert_rules(session: AsyncSession, command: commands.ListAlertRules) -> BaseModel:
        return await alerts.list_alert_rules(session=session, command=command)

    server.serve_prepared_in_transaction(
        commands.SET_ALERT_RULE, commands.SetAlertRule, check_webhook_host, set_alert_rule
    )
    server.serve_in_transaction(commands.REMOVE_ALERT_RULE, commands.RemoveAlertRule, remove_alert_rule)
    server.serve_in_transaction(commands.LIST_ALERT_RULES, commands.ListAlertRules, list_alert_rules)
