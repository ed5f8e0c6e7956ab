"""Refresh requests: asked for by an accountant, or by each client's schedule; the schedules."""

from __future__ import annotations

import dataclasses
import itertools
import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.commands import RejectionReason, RequestRefresh, SetRefreshSchedule, refused
from hub_common.db import lock_until_commit
from hub_common.events import Actor, RefreshRequested, RefreshScheduleSet, Role
from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_registry.domain.refresh_schedule import (
    CLOCK_SKEW_TOLERANCE,
    InvalidSchedule,
    QuietHours,
    RefreshSchedule,
    effective_schedule,
)
from hub_registry.models import (
    WHOLE_CLIENT_REFRESH,
    Accountant,
    Client,
    ClientScheduleRun,
    ManualRefresh,
    RefreshScheduleRow,
    TenantGrant,
)
from hub_registry.service.shared import (
    Context,
    account_numbers,
    client_connection,
    emit,
    is_uuid,
    live_client,
)

logger = get_logger(__name__)


async def emit_refresh(
    session: AsyncSession, context: Context, client: Client, *, company_id: uuid.UUID | None
) -> uuid.UUID:
    refresh_id = uuid.uuid4()
    await emit(
        session,
        context,
        RefreshRequested(
            refresh_id=refresh_id,
            client_id=client.id,
            connection=client_connection(client),
            company_id=company_id,
            tax_account_numbers=account_numbers(client.tax_account_numbers),
            cash_account_numbers=account_numbers(client.cash_account_numbers),
            accounts_revision=client.accounts_revision,
            time_zone=client.time_zone,
        ),
    )
    return refresh_id


@dataclasses.dataclass(frozen=True)
class RefreshesAsked:
    """What a refresh asked for by hand started: new refreshes, the ones asked for earlier
    that still await their outcome, not asked again, and how many clients were not asked
    this time (the firm's refreshes by hand awaited at once are at their most)."""

    started: list[uuid.UUID]
    on_their_way: list[uuid.UUID]
    not_started: int = 0


# A firm's refreshes asked for by hand that may await their outcome at once. Every firm
# shares the fetchers' queue in the order asked: "refresh all" of a firm with thousands of
# clients would otherwise put them all ahead of every other firm's (the same bound as its
# scheduled refreshes, SCHEDULED_AWAITED_PER_FIRM).
MANUAL_AWAITED_PER_FIRM = 500


async def request_refresh(
    *, session: AsyncSession, command: RequestRefresh, awaited_per_firm: int = MANUAL_AWAITED_PER_FIRM
) -> RefreshesAsked:
    """Refresh one company, one client or every client of the firm. A client (or company)
    whose refresh asked for by hand still awaits its outcome (a slow or throttled tenant
    it waits to be retried for) is not asked again: each waiting request holds a place in
    the fetchers' queue that every firm shares, and a script asking in a loop would fill it.
    Nor are more than ``awaited_per_firm`` of the firm's awaited at once: "refresh all" asks
    for the clients asked for least recently first, up to that, and says how many it left;
    a refresh of one client or company beyond it is refused, to be asked again later."""
    if command.client_id is not None:
        clients = [await live_client(session, command.firm_id, command.client_id)]
    else:
        if command.company_id is not None:
            raise refused(RejectionReason.INVALID, N_("A company refresh names its client"), "client_id")
        clients = list(
            (
                await session.execute(
                    select(Client).where(
                        Client.firm_id == command.firm_id,
                        col(Client.removed_at).is_(None),
                    )
                )
            ).scalars()
        )
    # A firm's refreshes by hand one request at a time, or two replicas each find nothing
    # awaited and both ask.
    await lock_until_commit(session, f"manual-refresh:{command.firm_id}")
    scope = str(command.company_id) if command.company_id is not None else WHOLE_CLIENT_REFRESH
    asked = {
        (row.client_id, row.scope): row
        for row in (
            await session.execute(
                select(ManualRefresh)
                .join(Client, col(Client.id) == col(ManualRefresh.client_id))
                .where(
                    # The firm's clients joined, not listed: a list of every client's id as
                    # parameters fails past 65,535 of them on PostgreSQL.
                    col(Client.firm_id) == command.firm_id,
                    col(ManualRefresh.client_id).in_([client.id for client in clients])
                    if command.client_id is not None
                    else col(Client.removed_at).is_(None),
                    # A company's refresh is on its way within its client's too.
                    col(ManualRefresh.scope).in_({scope, WHOLE_CLIENT_REFRESH}),
                )
            )
        ).scalars()
    }
    now = datetime.now(UTC)
    room = awaited_per_firm - await _manual_refreshes_awaited(session, command.firm_id, now)
    started: list[uuid.UUID] = []
    on_their_way: list[uuid.UUID] = []
    not_started = 0
    whole = WHOLE_CLIENT_REFRESH

    def least_recently_asked(client: Client) -> tuple[datetime, str]:
        row = asked.get((client.id, whole))
        return (row.requested_at if row is not None else datetime.min.replace(tzinfo=UTC), str(client.id))

    for client in sorted(clients, key=least_recently_asked):
        waiting = next(
            (
                row.awaiting_refresh_id
                for key in ((client.id, scope), (client.id, WHOLE_CLIENT_REFRESH))
                if (row := asked.get(key)) is not None
                and row.accounts_revision == client.accounts_revision
                and unanswered(row.awaiting_refresh_id, row.requested_at, now)
            ),
            None,
        )
        if waiting is not None:
            on_their_way.append(waiting)
            continue
        if room <= 0:
            if command.client_id is not None:
                raise refused(
                    RejectionReason.RATE_LIMITED,
                    N_(
                        "Your firm has %(count)s refreshes on their way, the most the hub queues for one firm;"
                        " ask again once some are through"
                    ),
                    count=awaited_per_firm,
                )
            not_started += 1
            continue
        room -= 1
        refresh_id = await emit_refresh(session, Context.of(command), client, company_id=command.company_id)
        row = asked.get((client.id, scope)) or ManualRefresh(
            client_id=client.id, scope=scope, firm_id=client.firm_id, requested_at=now
        )
        row.requested_at = now
        row.awaiting_refresh_id = refresh_id
        row.accounts_revision = client.accounts_revision
        session.add(row)
        started.append(refresh_id)
    return RefreshesAsked(started=started, on_their_way=on_their_way, not_started=not_started)


async def _manual_refreshes_awaited(session: AsyncSession, firm_id: uuid.UUID, now: datetime) -> int:
    """How many of the firm's refreshes asked for by hand await their outcome (``unanswered``)."""
    count = await session.scalar(
        select(func.count())
        .select_from(ManualRefresh)
        .where(
            col(ManualRefresh.firm_id) == firm_id,
            col(ManualRefresh.awaiting_refresh_id).is_not(None),
            col(ManualRefresh.requested_at) > now - ANSWER_AWAITED_AT_MOST,
            col(ManualRefresh.requested_at) <= now + CLOCK_SKEW_TOLERANCE,
        )
    )
    return int(count or 0)


async def manual_refresh_through(*, session: AsyncSession, client_id: uuid.UUID, refresh_id: uuid.UUID) -> None:
    """A refresh asked for by hand is through (service.refresh_outcomes): asking again
    starts another."""
    await session.execute(
        update(ManualRefresh)
        .where(col(ManualRefresh.client_id) == client_id, col(ManualRefresh.awaiting_refresh_id) == refresh_id)
        .values(awaiting_refresh_id=None)
        .execution_options(synchronize_session=False)
    )


SCHEDULE_ACTOR = Actor.service("registry-schedule")


def _schedule_of(row: RefreshScheduleRow) -> RefreshSchedule:
    quiet = QuietHours(row.quiet_from, row.quiet_until) if row.quiet_from and row.quiet_until else None
    every = timedelta(minutes=row.every_minutes) if row.every_minutes is not None else None
    return RefreshSchedule(every=every, quiet_hours=quiet, time_zone=row.time_zone)


# The saved rows that cannot be kept (as saved), so each is logged once per registry, not
# every tick; a row saved again (updated_at) is judged afresh.
_unkeepable_rows_logged: set[tuple[uuid.UUID, datetime]] = set()


def _keepable_schedules(rows: Sequence[RefreshScheduleRow]) -> list[tuple[RefreshScheduleRow, RefreshSchedule]]:
    """The saved schedules the tick can keep. A row that cannot be (its time zone no longer
    loads, or rules tightened since it was saved) is left out, so its clients follow the
    firm's schedule, or the hub's: one bad row must not stop every firm's refreshes."""
    keepable = []
    for row in rows:
        try:
            keepable.append((row, _schedule_of(row)))
        except InvalidSchedule as error:
            if (row.id, row.updated_at) not in _unkeepable_rows_logged:
                _unkeepable_rows_logged.add((row.id, row.updated_at))
                logger.warning(
                    "saved refresh schedule cannot be kept; its clients follow the firm's or the hub's",
                    firm_id=str(row.firm_id),
                    client_id=str(row.client_id) if row.client_id else None,
                    field=error.field,
                    reason=str(error),
                )
    return keepable


def _may_set_schedules(accountant: Accountant | None, firm_id: uuid.UUID) -> None:
    """The role matrix: owners and admins manage clients and the firm's settings."""
    if accountant is None or accountant.firm_id != firm_id:
        raise refused(RejectionReason.NOT_FOUND, N_("No such accountant"))
    if accountant.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise refused(RejectionReason.FORBIDDEN, N_("Only the firm's owners and admins set refresh schedules"))


async def set_refresh_schedule(*, session: AsyncSession, command: SetRefreshSchedule) -> None:
    """The firm's schedule, or one client's own, or a client given back to the firm's."""
    actor = uuid.UUID(command.actor.id) if is_uuid(command.actor.id) else None
    _may_set_schedules(await session.get(Accountant, actor) if actor else None, command.firm_id)
    if command.client_id is None:
        if command.follows_firm:
            raise refused(RejectionReason.INVALID, N_("Only a client follows the firm's schedule"), "follows_firm")
    else:
        await live_client(session, command.firm_id, command.client_id)
    if (command.quiet_from is None) != (command.quiet_until is None):
        raise refused(RejectionReason.INVALID, N_("Quiet hours need a start and an end"), "quiet_hours")
    try:
        schedule = RefreshSchedule(
            every=timedelta(minutes=command.every_minutes) if command.every_minutes is not None else None,
            quiet_hours=QuietHours(command.quiet_from, command.quiet_until)
            if command.quiet_from is not None and command.quiet_until is not None
            else None,
            time_zone=command.time_zone,
        )
        schedule.check_new()
    except InvalidSchedule as error:
        raise refused(RejectionReason.INVALID, error.message, error.field, **error.values) from error
    scope = (
        col(RefreshScheduleRow.client_id) == command.client_id
        if command.client_id is not None
        else (col(RefreshScheduleRow.firm_id) == command.firm_id) & col(RefreshScheduleRow.client_id).is_(None)
    )
    row = (await session.execute(select(RefreshScheduleRow).where(scope))).scalar_one_or_none()
    if command.follows_firm:
        if row is not None:
            await session.delete(row)
    else:
        row = row or RefreshScheduleRow(firm_id=command.firm_id, client_id=command.client_id, time_zone="UTC")
        row.every_minutes = command.every_minutes
        row.quiet_from = schedule.quiet_hours.start if schedule.quiet_hours else None
        row.quiet_until = schedule.quiet_hours.end if schedule.quiet_hours else None
        row.time_zone = schedule.time_zone
        row.updated_at = datetime.now(UTC)
        session.add(row)
    await emit(
        session,
        Context.of(command),
        RefreshScheduleSet(
            client_id=command.client_id,
            follows_firm=command.follows_firm,
            every_minutes=None if command.follows_firm else command.every_minutes,
            quiet_from=None if command.follows_firm else command.quiet_from,
            quiet_until=None if command.follows_firm else command.quiet_until,
            time_zone="UTC" if command.follows_firm else schedule.time_zone,
        ),
    )


# Scheduled refreshes one tick asks for: three times what the schedules ask per tick on
# average, and at least this many. Beyond it a burst (every client due at once after an
# outage of the registry, a schedule switched on or shortened, a new hub default) is spread
# over the next ticks, the firms taking turns, instead of thousands of requests queued at
# once ahead of every firm's own refreshes.
SCHEDULED_PER_TICK_AT_LEAST = 100
BURST_FACTOR = 3
# A firm's scheduled refreshes asked and still waiting for their outcome, at most: the
# fetchers take requests in the order asked, every firm's together, so once they fall
# behind, a firm with thousands of clients on a short interval would put all of them ahead
# of every other firm's refreshes and Test Client URLs. Past this, its due clients wait for
# the next ticks (about 1,500 company reads: two minutes of one fetcher).
SCHEDULED_AWAITED_PER_FIRM = 500


def _firms_taking_turns(
    due: list[tuple[Client, datetime]], limit: int, room: Mapping[uuid.UUID, int]
) -> list[tuple[Client, datetime]]:
    """Up to ``limit`` of the due clients, and of each firm's at most its ``room``: each
    firm's longest-waiting first, one firm after another, so a firm with thousands of
    clients does not hold back one with three."""
    by_firm: dict[uuid.UUID, list[tuple[Client, datetime]]] = {}
    for client, last_run in sorted(due, key=lambda item: (item[1], str(item[0].id))):
        by_firm.setdefault(client.firm_id, []).append((client, last_run))
    for firm_id, firm_due in by_firm.items():
        del firm_due[max(0, room[firm_id]) :]
    chosen: list[tuple[Client, datetime]] = []
    for turn in itertools.zip_longest(*by_firm.values()):
        chosen.extend(item for item in turn if item is not None)
        if len(chosen) >= limit:
            return chosen[:limit]
    return chosen


async def refresh_due_clients(
    *,
    session: AsyncSession,
    operator_default: RefreshSchedule,
    now: datetime,
    correlation_id: str,
    upkeep: timedelta | None = None,
    tick: timedelta = timedelta(minutes=1),
    awaited_per_firm: int = SCHEDULED_AWAITED_PER_FIRM,
) -> int:
    """One RefreshRequested per live, granted client whose schedule is due (a client still
    waiting for permission has nothing to read), a firm's as long as fewer than
    ``awaited_per_firm`` of its scheduled refreshes wait for their outcome; how many. Each
    client's run is recorded in the same transaction as its request. With ``upkeep`` (the hub subscribes to BC's
    change notices), a client whose schedule is off, or slower, is still read that often,
    outside its quiet hours (and in them once 40 hours passed), so its subscriptions are
    renewed before they expire."""
    granted = (
        select(TenantGrant.id)
        .where(
            TenantGrant.firm_id == Client.firm_id,
            TenantGrant.tenant_id == Client.tenant_id,
            col(TenantGrant.revoked_at).is_(None),
        )
        .exists()
    )
    # Each client with its run in one statement: a list of every client's id as parameters
    # of a second one stopped the schedule for every firm past 65,535 clients (PostgreSQL's
    # limit of parameters per statement).
    live = (col(Client.removed_at).is_(None), granted)
    with_runs = (
        await session.execute(
            select(Client, ClientScheduleRun)
            .outerjoin(ClientScheduleRun, col(ClientScheduleRun.client_id) == col(Client.id))
            .where(*live)
        )
    ).all()
    if not with_runs:
        return 0
    clients = [client for client, _ in with_runs]
    runs = {client.id: run for client, run in with_runs if run is not None}
    rows = (
        (
            await session.execute(
                select(RefreshScheduleRow).where(
                    col(RefreshScheduleRow.firm_id).in_(select(col(Client.firm_id)).where(*live).distinct())
                )
            )
        )
        .scalars()
        .all()
    )
    keepable = _keepable_schedules(rows)
    firm_schedules = {row.firm_id: schedule for row, schedule in keepable if row.client_id is None}
    client_schedules = {row.client_id: schedule for row, schedule in keepable if row.client_id is not None}
    due: list[tuple[Client, datetime]] = []
    # The interval each due client is asked under, kept with its run.
    asked_every: dict[uuid.UUID, int | None] = {}
    per_tick = 0.0
    awaited: Counter[uuid.UUID] = Counter()
    for client in clients:
        run = runs.get(client.id)
        if run is not None and unanswered(run.awaiting_refresh_id, run.last_run_at, now):
            awaited[client.firm_id] += 1
        schedule = effective_schedule(
            firm_schedules.get(client.firm_id, operator_default), client_schedules.get(client.id)
        )
        if upkeep is not None and (schedule.every is None or schedule.every > upkeep):
            schedule = dataclasses.replace(schedule, every=upkeep)
        if schedule.every is not None:
            per_tick += tick / schedule.every
        if run is not None and unanswered(run.awaiting_refresh_id, run.last_run_at, now):
            continue  # its last refresh waits to be retried: once it is through, it is due
        last_run = run.last_run_at if run else client.created_at
        last_every = timedelta(seconds=run.every_seconds) if run and run.every_seconds else None
        if schedule.is_due(
            client_id=client.id, last_run=last_run, now=now, upkeep=upkeep is not None, last_every=last_every
        ):
            due.append((client, last_run))
            asked_every[client.id] = int(schedule.every.total_seconds()) if schedule.every else None
    limit = max(SCHEDULED_PER_TICK_AT_LEAST, math.ceil(BURST_FACTOR * per_tick))
    if len(due) > limit:
        logger.info("scheduled refreshes spread over the next ticks", due=len(due), this_tick=limit)
    room = {firm_id: awaited_per_firm - awaited[firm_id] for firm_id in {client.firm_id for client, _ in due}}
    for firm_id, left in room.items():
        if left <= 0:
            logger.info(
                "a firm's scheduled refreshes wait for those still on their way",
                firm_id=str(firm_id),
                awaited=awaited[firm_id],
            )
    requested = 0
    for client, _ in _firms_taking_turns(due, limit, room):
        run = runs.get(client.id)
        if run is None:
            # Two replicas at once (a lease changing hands): the second's insert fails its
            # transaction, and nothing of that tick is asked twice.
            run = ClientScheduleRun(client_id=client.id, last_run_at=now, every_seconds=asked_every[client.id])
            session.add(run)
            run.awaiting_refresh_id = await emit_refresh(
                session, Context(client.firm_id, SCHEDULE_ACTOR, correlation_id), client, company_id=None
            )
            requested += 1
            continue
        claimed = await session.execute(
            update(ClientScheduleRun)
            .where(
                col(ClientScheduleRun.client_id) == client.id,
                col(ClientScheduleRun.last_run_at) == run.last_run_at,
            )
            .values(last_run_at=now, every_seconds=asked_every[client.id])
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue  # another replica ran it since this tick read the runs
        refresh_id = await emit_refresh(
            session, Context(client.firm_id, SCHEDULE_ACTOR, correlation_id), client, company_id=None
        )
        await session.execute(
            update(ClientScheduleRun)
            .where(col(ClientScheduleRun.client_id) == client.id)
            .values(awaiting_refresh_id=refresh_id)
            .execution_options(synchronize_session=False)
        )
        requested += 1
    return requested


# Past the fetcher's last retry of a refresh with its default settings (8 deliveries, each
# within its 15-minute deadline, at most 5 minutes apart: 2 hours 35 minutes): an outcome
# not seen by then (lost, or of a refresh dropped unanswered) is not waited for any longer.
ANSWER_AWAITED_AT_MOST = timedelta(hours=3)


def unanswered(awaiting_refresh_id: uuid.UUID | None, asked_at: datetime, now: datetime) -> bool:
    """Whether a refresh asked for at ``asked_at`` still waits for its outcome: not past
    ANSWER_AWAITED_AT_MOST, and not asked by a replica whose clock ran ahead (a wait
    counted from a moment still to come would last that much longer)."""
    return (
        awaiting_refresh_id is not None
        and now - asked_at < ANSWER_AWAITED_AT_MOST
        and asked_at <= now + CLOCK_SKEW_TOLERANCE
    )


async def scheduled_refresh_through(*, session: AsyncSession, client_id: uuid.UUID, refresh_id: uuid.UUID) -> None:
    """The client's last scheduled refresh is through (service.refresh_outcomes), so the
    schedule asks for the client again when due."""
    await session.execute(
        update(ClientScheduleRun)
        .where(
            col(ClientScheduleRun.client_id) == client_id,
            col(ClientScheduleRun.awaiting_refresh_id) == refresh_id,
        )
        .values(awaiting_refresh_id=None)
        .execution_options(synchronize_session=False)
    )
