"""Refresh state in the read model: a refresh changes only the rows it asked for, its
progress ends when each of them has an outcome (also for a client without companies and
one whose discovery fails), a wait for a retry (RefreshDeferred) shows on the rows and in
Check Errors until a later outcome replaces it, and a discovery naming one company twice
is applied."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.events import (
    ClientConnection,
    CompaniesDiscovered,
    DiscoveredCompany,
    Failure,
    FailureKind,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
)
from hub_gateway.check_errors import queries as check_errors_queries
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.queries import DashboardQuery
from hub_gateway.readmodel.models import ClientRow
from hub_gateway.refresh import queries as refresh_queries
from tests.integration.test_dashboard_model import FIRM, Log, _apply, _client, _snapshot
from tests.integration.test_projection import NOW

CONNECTION = ClientConnection(tenant="alpha.example", environment="Production")


def _throttled(at: datetime) -> Failure:
    return Failure(
        kind=FailureKind.THROTTLED,
        summary="Business Central asked the hub to slow down.",
        fix="Nothing to do: the hub tries again by itself.",
        http_status=429,
        bc_error_code="Application_TooManyRequests",
        correlation_id="c-429",
        occurred_at=at,
    )


async def _firm(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Alpha with two companies, both read (OK)."""
    log = Log()
    alpha = uuid.uuid4()
    first = uuid.uuid4()
    a1, a2 = uuid.uuid4(), uuid.uuid4()
    log.add(_client("Alpha", "alpha.example", alpha))
    log.add(
        CompaniesDiscovered(
            client_id=alpha,
            refresh_id=first,
            companies=[DiscoveredCompany(company_id=a1, name="A1"), DiscoveredCompany(company_id=a2, name="A2")],
        )
    )
    log.add(_snapshot(alpha, a1, "A1", "1.00", 0, first))
    log.add(_snapshot(alpha, a2, "A2", "2.00", 0, first))
    await _apply(sessions, log.items)
    return {"log": log, "alpha": alpha, "a1": a1, "a2": a2}


def _next(log: Log) -> Log:
    """A log that continues another's stream sequences, holding only the new events."""
    following = Log()
    following.sequences = dict(log.sequences)
    return following


async def _states(sessions: async_sessionmaker[AsyncSession]) -> dict[str | None, str]:
    async with sessions() as session:
        page = await dashboard_queries.dashboard_page(session, firm_id=FIRM, query=DashboardQuery())
    return {row.company_name or row.client_name: row.state for row in page.rows}


async def _progress(sessions: async_sessionmaker[AsyncSession], run: str) -> dict[str, int]:
    async with sessions() as session:
        return (await refresh_queries.refresh_progress(session, firm_id=FIRM, correlation_id=run)).model_dump()


async def _errors(sessions: async_sessionmaker[AsyncSession]) -> list[check_errors_queries.FailureEntry]:
    async with sessions() as session:
        return (await check_errors_queries.failures(session, firm_id=FIRM)).failures


async def test_refreshing_one_company_leaves_its_siblings_alone(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm(sessions)
    refresh = uuid.uuid4()
    log = _next(firm["log"])
    log.add(
        RefreshRequested(refresh_id=refresh, client_id=firm["alpha"], connection=CONNECTION, company_id=firm["a1"]),
        correlation_id="run-a1",
    )
    # The fetcher's discovery lists every company of the client, not only the requested one.
    log.add(
        CompaniesDiscovered(
            client_id=firm["alpha"],
            refresh_id=refresh,
            companies=[
                DiscoveredCompany(company_id=firm["a1"], name="A1"),
                DiscoveredCompany(company_id=firm["a2"], name="A2"),
                DiscoveredCompany(company_id=uuid.uuid4(), name="A3, new in BC"),
            ],
        )
    )
    await _apply(sessions, log.items)
    assert await _states(sessions) == {"A1": "refreshing", "A2": "ok"}
    assert await _progress(sessions, "run-a1") == {"refreshes": 1, "total": 1, "done": 0, "failed": 0}

    done = _next(log)
    done.add(
        _snapshot(firm["alpha"], firm["a1"], "A1", "5.00", 0, refresh).model_copy(
            update={"read_at": NOW + timedelta(hours=1)}
        )
    )
    await _apply(sessions, done.items)
    assert await _states(sessions) == {"A1": "ok", "A2": "ok"}
    assert await _progress(sessions, "run-a1") == {"refreshes": 1, "total": 1, "done": 1, "failed": 0}


async def test_a_client_level_failure_of_a_company_refresh_fails_only_that_company(
    fresh_model: Callable[[], Any],
) -> None:
    sessions = await fresh_model()
    firm = await _firm(sessions)
    refresh = uuid.uuid4()
    log = _next(firm["log"])
    log.add(
        RefreshRequested(refresh_id=refresh, client_id=firm["alpha"], connection=CONNECTION, company_id=firm["a2"]),
        correlation_id="run-a2",
    )
    failure = _throttled(NOW + timedelta(hours=1)).model_copy(
        update={"kind": FailureKind.CREDENTIALS_REJECTED, "http_status": 401}
    )
    log.add(RefreshFailed(refresh_id=refresh, client_id=firm["alpha"], failure=failure))
    await _apply(sessions, log.items)
    assert await _states(sessions) == {"A1": "ok", "A2": "failed"}
    assert await _progress(sessions, "run-a2") == {"refreshes": 1, "total": 1, "done": 1, "failed": 1}


async def test_progress_completes_for_a_client_without_companies_and_one_that_fails(
    fresh_model: Callable[[], Any],
) -> None:
    sessions = await fresh_model()
    log = Log()
    empty, broken = uuid.uuid4(), uuid.uuid4()
    refresh_empty, refresh_broken = uuid.uuid4(), uuid.uuid4()
    log.add(_client("Empty", "empty.example", empty))
    log.add(_client("Broken", "broken.example", broken))
    for client, refresh in ((empty, refresh_empty), (broken, refresh_broken)):
        log.add(RefreshRequested(refresh_id=refresh, client_id=client, connection=CONNECTION), correlation_id="all")
    await _apply(sessions, log.items)
    assert await _progress(sessions, "all") == {"refreshes": 2, "total": 2, "done": 0, "failed": 0}

    answers = _next(log)
    answers.add(CompaniesDiscovered(client_id=empty, refresh_id=refresh_empty, companies=[]))
    failure = _throttled(NOW).model_copy(update={"kind": FailureKind.TENANT_NOT_FOUND, "http_status": 400})
    answers.add(RefreshFailed(refresh_id=refresh_broken, client_id=broken, failure=failure))
    await _apply(sessions, answers.items)
    assert await _progress(sessions, "all") == {"refreshes": 2, "total": 2, "done": 2, "failed": 1}
    assert await _states(sessions) == {"Empty": "ok", "Broken": "failed"}


async def test_a_discovery_naming_a_company_twice_is_applied(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm(sessions)
    log = _next(firm["log"])
    twice = [
        DiscoveredCompany(company_id=firm["a1"], name="A1"),
        DiscoveredCompany(company_id=firm["a1"], name="A1 again"),
        DiscoveredCompany(company_id=firm["a2"], name="A2"),
        DiscoveredCompany(company_id=firm["a2"], name="A2 again"),
    ]
    new = uuid.uuid4()
    twice += [DiscoveredCompany(company_id=new, name="New"), DiscoveredCompany(company_id=new, name="New again")]
    log.add(CompaniesDiscovered(client_id=firm["alpha"], refresh_id=uuid.uuid4(), companies=twice))
    await _apply(sessions, log.items)
    assert await _states(sessions) == {"A1": "refreshing", "A2": "refreshing", "New": "refreshing"}


async def test_a_wait_for_a_retry_shows_until_a_later_outcome_replaces_it(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    firm = await _firm(sessions)
    refresh = uuid.uuid4()
    waited_at = NOW + timedelta(hours=1)
    next_try = waited_at + timedelta(minutes=35)
    log = _next(firm["log"])
    log.add(RefreshRequested(refresh_id=refresh, client_id=firm["alpha"], connection=CONNECTION), correlation_id="r")
    log.add(
        CompaniesDiscovered(
            client_id=firm["alpha"],
            refresh_id=refresh,
            companies=[
                DiscoveredCompany(company_id=firm["a1"], name="A1"),
                DiscoveredCompany(company_id=firm["a2"], name="A2"),
            ],
        )
    )
    for attempt in (1, 2):
        log.add(
            RefreshDeferred(
                refresh_id=refresh,
                client_id=firm["alpha"],
                company_id=firm["a1"],
                company_name="A1",
                failure=_throttled(waited_at + timedelta(seconds=attempt)),
                attempt=attempt,
                next_attempt_at=next_try,
            )
        )
    await _apply(sessions, log.items)
    async with sessions() as session:
        page = await dashboard_queries.dashboard_page(session, firm_id=FIRM, query=DashboardQuery())
    a1 = next(row for row in page.rows if row.company_name == "A1")
    assert (a1.state, a1.next_attempt_at) == ("waiting", next_try)
    assert a1.failure is not None and a1.failure.kind == "throttled"
    assert page.states.waiting == 1
    # The later attempt's wait replaced the first one's in Check Errors.
    [entry] = await _errors(sessions)
    assert (entry.company_name, entry.attempt, entry.next_attempt_at) == ("A1", 2, next_try)
    assert entry.failure["http_status"] == 429 and entry.failure["correlation_id"] == "c-429"
    assert await _progress(sessions, "r") == {"refreshes": 1, "total": 2, "done": 0, "failed": 0}

    read = _next(log)
    read.add(_snapshot(firm["alpha"], firm["a1"], "A1", "7.00", 0, refresh).model_copy(update={"read_at": next_try}))
    read.add(_snapshot(firm["alpha"], firm["a2"], "A2", "8.00", 0, refresh).model_copy(update={"read_at": next_try}))
    await _apply(sessions, read.items)
    assert await _states(sessions) == {"A1": "ok", "A2": "ok"}
    assert await _errors(sessions) == []
    assert await _progress(sessions, "r") == {"refreshes": 1, "total": 2, "done": 2, "failed": 0}


async def test_a_snapshot_projected_before_the_older_wait_keeps_the_company_ok(
    fresh_model: Callable[[], Any],
) -> None:
    """Snapshots and events are projected by two consumers: the retry's snapshot may land
    before the deferral that preceded it."""
    sessions = await fresh_model()
    firm = await _firm(sessions)
    refresh = uuid.uuid4()
    waited_at = NOW + timedelta(hours=1)
    log = _next(firm["log"])
    log.add(
        _snapshot(firm["alpha"], firm["a1"], "A1", "7.00", 0, refresh).model_copy(
            update={"read_at": waited_at + timedelta(minutes=5)}
        )
    )
    log.add(
        RefreshDeferred(
            refresh_id=refresh,
            client_id=firm["alpha"],
            company_id=firm["a1"],
            company_name="A1",
            failure=_throttled(waited_at),
            attempt=1,
            next_attempt_at=waited_at + timedelta(minutes=5),
        )
    )
    await _apply(sessions, log.items)
    assert (await _states(sessions))["A1"] == "ok"
    assert await _errors(sessions) == []


async def test_a_client_waiting_to_be_reached_then_a_failure(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    log = Log()
    client, refresh = uuid.uuid4(), uuid.uuid4()
    log.add(_client("Upgrading", "upgrading.example", client))
    log.add(RefreshRequested(refresh_id=refresh, client_id=client, connection=CONNECTION), correlation_id="u")
    offline = _throttled(NOW).model_copy(update={"kind": FailureKind.ENVIRONMENT_OFFLINE, "http_status": 503})
    next_try = NOW + timedelta(minutes=35)
    log.add(RefreshDeferred(refresh_id=refresh, client_id=client, failure=offline, attempt=1, next_attempt_at=next_try))
    await _apply(sessions, log.items)
    async with sessions() as session:
        row = await session.get(ClientRow, client)
    assert row is not None and (row.state, row.next_attempt_at) == ("waiting", next_try)
    [entry] = await _errors(sessions)
    assert (entry.company_id, entry.next_attempt_at, entry.failure["kind"]) == (None, next_try, "environment_offline")

    failed = _next(log)
    failed.add(
        RefreshFailed(
            refresh_id=refresh, client_id=client, failure=offline.model_copy(update={"occurred_at": next_try})
        )
    )
    await _apply(sessions, failed.items)
    assert await _states(sessions) == {"Upgrading": "failed"}
    [entry] = await _errors(sessions)
    assert entry.next_attempt_at is None and entry.occurred_at == next_try
    assert await _progress(sessions, "u") == {"refreshes": 1, "total": 1, "done": 1, "failed": 1}


async def test_check_errors_names_a_company_as_the_dashboard_does(fresh_model: Callable[[], Any]) -> None:
    """A company with a display name in BC is "Alpha Trading" on its row, so also in Check
    Errors (the failure itself carries BC's name, "A1"); one gone from the dashboard keeps
    the failure's name (its failure predates the list of companies that left it out, so
    its problem is resolved)."""
    sessions = await fresh_model()
    firm = await _firm(sessions)
    refresh = uuid.uuid4()
    log = _next(firm["log"])
    log.add(
        CompaniesDiscovered(
            client_id=firm["alpha"],
            refresh_id=refresh,
            companies=[
                DiscoveredCompany(company_id=firm["a1"], name="A1", display_name="Alpha Trading"),
                DiscoveredCompany(company_id=firm["a2"], name="A2"),
            ],
        )
    )
    gone = uuid.uuid4()
    for company_id, name in ((firm["a1"], "A1"), (gone, "Old company")):
        log.add(
            RefreshFailed(
                refresh_id=refresh,
                client_id=firm["alpha"],
                company_id=company_id,
                company_name=name,
                failure=_throttled(NOW + timedelta(hours=1)).model_copy(
                    update={"kind": FailureKind.NO_COMPANY_ACCESS, "http_status": 403}
                ),
            )
        )
    await _apply(sessions, log.items)
    assert {entry.company_name for entry in await _errors(sessions)} == {"Alpha Trading", "Old company"}
    async with sessions() as session:
        page = await check_errors_queries.problems(session, firm_id=FIRM, status=None)
    assert {problem.company_name for problem in page.problems} == {"Alpha Trading", "Old company"}
    assert {problem.latest.company_name for problem in page.problems} == {"Alpha Trading", "Old company"}


async def test_a_problem_ends_when_a_list_of_the_clients_companies_no_longer_holds_it(
    fresh_model: Callable[[], Any],
) -> None:
    """A company deleted in BC (or the client's card moved elsewhere) is never read again:
    its problem is resolved by the first list of the client's companies without it, and a
    client's own problem by any list (its BC answered, though it holds no company). A
    problem after the list stays open, and the page counts the firm's open problems
    whichever status it lists."""
    sessions = await fresh_model()
    firm = await _firm(sessions)
    now = datetime.now(UTC)
    log = _next(firm["log"])
    beta, gone, refresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    log.add(_client("Beta", "beta.example", beta))
    denied = _throttled(now - timedelta(hours=1)).model_copy(
        update={"kind": FailureKind.NO_COMPANY_ACCESS, "http_status": 403}
    )
    log.add(
        RefreshFailed(refresh_id=refresh, client_id=firm["alpha"], company_id=gone, company_name="Old", failure=denied)
    )
    log.add(RefreshFailed(refresh_id=refresh, client_id=beta, failure=denied))
    later = denied.model_copy(update={"occurred_at": now + timedelta(hours=1)})
    log.add(
        RefreshFailed(
            refresh_id=refresh, client_id=firm["alpha"], company_id=firm["a2"], company_name="A2", failure=later
        )
    )
    listing = uuid.uuid4()
    log.add(
        CompaniesDiscovered(
            client_id=firm["alpha"],
            refresh_id=listing,
            companies=[
                DiscoveredCompany(company_id=firm["a1"], name="A1"),
                DiscoveredCompany(company_id=firm["a2"], name="A2"),
            ],
        )
    )
    log.add(CompaniesDiscovered(client_id=beta, refresh_id=listing, companies=[]))
    await _apply(sessions, log.items)
    async with sessions() as session:
        every = await check_errors_queries.problems(session, firm_id=FIRM, status=None)
        resolved = await check_errors_queries.problems(session, firm_id=FIRM, status="resolved")
        # The history filtered by kind in the query, so its count and pages are the kind's.
        denials = await check_errors_queries.failures(session, firm_id=FIRM, kind=FailureKind.NO_COMPANY_ACCESS.value)
        throttles = await check_errors_queries.failures(session, firm_id=FIRM, kind=FailureKind.THROTTLED.value)
    states = {(problem.client_name, problem.company_name): problem.status for problem in every.problems}
    assert states == {("Alpha", "Old"): "resolved", ("Beta", None): "resolved", ("Alpha", "A2"): "open"}
    assert all(
        problem.resolved_at is not None and problem.resolved_at > now - timedelta(hours=1)
        for problem in resolved.problems
    )
    assert (every.open, resolved.open, resolved.total) == (1, 1, 2)
    assert (denials.total, len(denials.failures), throttles.total) == (3, 3, 0)


async def test_an_open_problem_counts_from_the_last_read_before_it(fresh_model: Callable[[], Any]) -> None:
    """A company denied twice, then read, then denied again: the open problem is once, since
    the last denial (the two before ended with the read), not three times since the first."""
    sessions = await fresh_model()
    firm = await _firm(sessions)  # both companies read at NOW
    log = _next(firm["log"])
    denied = _throttled(NOW).model_copy(update={"kind": FailureKind.NO_COMPANY_ACCESS, "http_status": 403})
    refresh = uuid.uuid4()

    def denial(at: datetime) -> RefreshFailed:
        return RefreshFailed(
            refresh_id=refresh,
            client_id=firm["alpha"],
            company_id=firm["a1"],
            company_name="A1",
            failure=denied.model_copy(update={"occurred_at": at}),
        )

    for days in (60, 50):
        log.add(denial(NOW - timedelta(days=days)))
    log.add(denial(NOW + timedelta(days=30)))
    await _apply(sessions, log.items)
    async with sessions() as session:
        page = await check_errors_queries.problems(session, firm_id=FIRM)
    [problem] = page.problems
    assert (problem.status, problem.occurrences) == ("open", 1)
    assert problem.first_seen == problem.last_seen == NOW + timedelta(days=30)
