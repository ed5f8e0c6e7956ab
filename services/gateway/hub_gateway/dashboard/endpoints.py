"""The dashboard's API: rows with filters, sorting and paging; the columns; preferences and
saved views; and the live stream that pushes fresh figures to the open page."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncGenerator
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from hub_common.db import transaction
from hub_common.i18n import N_, Translator
from hub_gateway.accounts import preferences
from hub_gateway.auth import Principal
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.health import in_language
from hub_gateway.dashboard.live import (
    ROWS_PER_EVENT_AT_MOST,
    STREAMS_PER_ACCOUNTANT,
    STREAMS_PER_FIRM,
    Crowded,
    LiveResponse,
    Notice,
    TooManyStreams,
)
from hub_gateway.dependencies import (
    MAX_OFFSET,
    CurrentPrincipal,
    GatewayState,
    Session,
    State,
    feature_api,
    still_signed_in,
)
from hub_gateway.languages import LocalizedHTTPException, request_translator
from hub_gateway.readmodel.columns import DEFAULT_COLUMNS, FIGURE_COLUMNS

dashboard_api = feature_api("dashboard")


# How often an idle live stream sends a comment, so proxies keep it open and a closed
# page is noticed.
KEEP_ALIVE_SECONDS = 15.0


# A page that lost its stream reconnects after this long (the browser does it by itself).
RECONNECT_MILLISECONDS = 2000


def _invalid(message: str, field: str, **values: object) -> HTTPException:
    return LocalizedHTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message, field=field, values=values)


def _threshold(text: str) -> dict[str, Any]:
    column, _, rest = text.partition(":")
    comparison, _, value = rest.partition(":")
    try:
        Decimal(value)
    except InvalidOperation:
        raise _invalid(
            N_("%(text)s is not column:comparison:number, e.g. cash:lt:10000"), "threshold", text=repr(text[:60])
        ) from None
    return {"column": column, "comparison": comparison, "value": value}


def _dashboard_query(
    text: str | None,
    client_id: uuid.UUID | None,
    assigned_accountant_id: uuid.UUID | None,
    has_errors: bool,
    needs_attention: bool,
    overdue: bool,
    threshold: list[str],
    sort: str,
    offset: int,
    limit: int,
) -> dashboard_queries.DashboardQuery:
    descending = sort.startswith("-")
    try:
        return dashboard_queries.DashboardQuery(
            text=text or None,
            client_id=client_id,
            assigned_accountant_id=assigned_accountant_id,
            has_errors=has_errors,
            needs_attention=needs_attention,
            overdue=overdue,
            thresholds=[_threshold(item) for item in threshold],
            sort=sort.removeprefix("-"),
            descending=descending,
            offset=offset,
            limit=limit,
        )
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise _invalid(
            N_("%(location)s: %(problem)s"), location.split(".")[0], location=location, problem=first["msg"]
        ) from None


@dashboard_api.get("/dashboard")
async def dashboard(
    request: Request,
    principal: CurrentPrincipal,
    session: Session,
    state: State,
    text: Annotated[str | None, Query(max_length=200, description="Part of a client or company name")] = None,
    client_id: uuid.UUID | None = None,
    assigned_accountant_id: uuid.UUID | None = None,
    has_errors: Annotated[bool, Query(description="Only rows whose last refresh failed")] = False,
    needs_attention: Annotated[
        bool, Query(description="Only rows that failed or are waiting to retry (the summary's 'need attention')")
    ] = False,
    overdue: Annotated[
        bool, Query(description="Only rows with an overdue sales or purchase invoice or amount")
    ] = False,
    threshold: Annotated[
        list[str],
        Query(max_length=20, description="column:comparison:number, comparison one of gt ge lt le eq ne"),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    sort: Annotated[str, Query(max_length=60, description="A column key; '-' first sorts descending")] = "client_name",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=dashboard_queries.MAX_PAGE_SIZE)] = 200,
) -> dashboard_queries.DashboardPage:
    """One row per company of every client of the caller's firm, filtered, sorted and paged.

    With a reporting currency in the caller's preferences, amounts are converted with each
    company's own exchange rates, and sorting and thresholds apply to the converted amounts;
    an amount that cannot be converted sorts after the rest and matches no threshold."""
    query = _dashboard_query(
        text, client_id, assigned_accountant_id, has_errors, needs_attention, overdue, threshold, sort, offset, limit
    )
    chosen = await preferences.preferences_of(session, principal)
    page = await dashboard_queries.dashboard_page(
        session,
        firm_id=principal.firm_id,
        query=query,
        weights=state.settings.health_weights,
        reporting_currency=chosen.reporting_currency,
    )
    t = request_translator(request)
    for row in page.rows:
        row.health = in_language(row.health, t)
    return page


class ColumnInfo(BaseModel):
    key: str
    label: str
    kind: str


class ColumnCatalogue(BaseModel):
    columns: list[ColumnInfo]
    default: list[str]


@dashboard_api.get("/columns")
async def columns(principal: CurrentPrincipal) -> ColumnCatalogue:
    """Every figure column an accountant can choose, and the default choice."""
    return ColumnCatalogue(
        columns=[ColumnInfo(key=c.key, label=c.label, kind=c.kind.value) for c in FIGURE_COLUMNS],
        default=list(DEFAULT_COLUMNS),
    )


@dashboard_api.get("/preferences")
async def get_preferences(principal: CurrentPrincipal, session: Session) -> preferences.Preferences:
    return await preferences.preferences_of(session, principal)


@dashboard_api.put("/preferences")
async def put_preferences(
    principal: CurrentPrincipal, state: State, body: preferences.Preferences
) -> preferences.Preferences:
    """The columns (and their order), locale, page size and reporting currency, saved for the caller."""
    async with transaction(state.sessions) as session:
        return await preferences.save_preferences(session, principal, body)


@dashboard_api.get("/views")
async def list_views(principal: CurrentPrincipal, session: Session) -> list[preferences.SavedView]:
    return await preferences.saved_views(session, principal)


@dashboard_api.post("/views", status_code=status.HTTP_201_CREATED)
async def create_view(
    principal: CurrentPrincipal, state: State, body: preferences.ViewDefinition
) -> preferences.SavedView:
    try:
        async with transaction(state.sessions) as session:
            return await preferences.save_view(session, principal, body)
    except preferences.DuplicateViewName:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail={"message": N_("You already have a view of that name"), "field": "name"}
        ) from None
    except preferences.TooManyViews:
        raise LocalizedHTTPException(
            status.HTTP_409_CONFLICT,
            N_("At most %(count)s views; delete one first"),
            values={"count": preferences.MAX_VIEWS_PER_ACCOUNTANT},
        ) from None


@dashboard_api.delete("/views/{view_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_view(view_id: uuid.UUID, principal: CurrentPrincipal, state: State) -> None:
    async with transaction(state.sessions) as session:
        if not await preferences.delete_view(session, principal, view_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such view"))


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dashboard_api.get(
    "/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def live(request: Request, principal: CurrentPrincipal, state: State) -> StreamingResponse:
    """Server-sent events for the caller's firm: ``rows`` (the changed clients' rows and the
    state counts), ``failures`` (Check Errors has news) and ``reload`` (fetch the page again)."""
    firm_id = principal.firm_id
    t = request_translator(request)
    too_many = {
        Crowded.ACCOUNTANT: t.gettext(
            "At most %(count)s live pages at once; close some tabs", count=STREAMS_PER_ACCOUNTANT
        ),
        Crowded.FIRM: t.gettext(
            "Your firm has as many live pages open on this server as it may (%(count)s); close some tabs",
            count=STREAMS_PER_FIRM,
        ),
        Crowded.REPLICA: t.gettext("This server has as many live pages open as it serves; try again shortly"),
    }
    if (crowded := state.live.crowded(principal.accountant_id, firm_id)) is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=too_many[crowded])

    async def stream() -> AsyncGenerator[str, None]:
        # Counted from inside the stream: its end (however the page went) releases it.
        try:
            state.live.reserve(principal.accountant_id, firm_id)
        except TooManyStreams as refused:
            yield f"retry: {RECONNECT_MILLISECONDS * 30}\n\n"
            yield _event("refused", {"message": too_many[refused.crowded]})
            return
        try:
            with state.live.listen(firm_id) as queue:
                if state.live.ending:
                    # The server began to stop while this stream was being opened.
                    return
                # A sign-out or removal announced between the request's own check and the
                # listening above was heard by nobody: checked once more now.
                if not await still_signed_in(request, state, principal):
                    return
                # Scattered, so the pages of a replica that stops do not all come back at once.
                yield f"retry: {random.randint(RECONNECT_MILLISECONDS // 2, RECONNECT_MILLISECONDS * 2)}\n\n"
                yield _event("ready", {"firm_id": str(firm_id)})
                checked_at = time.monotonic()
                while not await request.is_disconnected():
                    notice: Notice | None
                    # Woken for the next check at the latest, however the notices came.
                    next_check = max(0.0, KEEP_ALIVE_SECONDS - (time.monotonic() - checked_at))
                    try:
                        notice = await asyncio.wait_for(queue.get(), timeout=next_check)
                    except TimeoutError:
                        notice = None
                    # Changes that arrived together go out together.
                    while notice is not None and not queue.empty():
                        notice.merge(queue.get_nowait())
                    if notice is not None and notice.end:
                        return
                    sign_in_changed = notice is not None and principal.accountant_id in notice.sign_in_changed_of
                    if sign_in_changed or time.monotonic() - checked_at >= KEEP_ALIVE_SECONDS:
                        if not await still_signed_in(request, state, principal):
                            # Signed out, expired, revoked or another role since the stream
                            # opened: the page's reconnect must sign in again.
                            return
                        checked_at = time.monotonic()
                    if notice is None or not notice.changes_rows:
                        yield ": keep-alive\n\n"
                        continue
                    for message in await _messages(state, principal, notice, t):
                        yield message
        finally:
            state.live.release(principal.accountant_id, firm_id)

    # no-store: the stream carries the firm's figures, which no proxy may keep.
    return LiveResponse(
        stream(),
        send_within=state.settings.live_send_within_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _in_language(row: dashboard_queries.PageRow, t: Translator) -> dashboard_queries.PageRow:
    return row.model_copy(update={"health": in_language(row.health, t)})


async def _messages(state: GatewayState, principal: Principal, notice: Notice, t: Translator) -> list[str]:
    """The events of one change, in the language of the stream's page."""
    if notice.reload or len(notice.client_ids) > ROWS_PER_EVENT_AT_MOST:
        # Beyond so many clients the page reads its own page of rows instead of every
        # changed client's being read and encoded here for each open page of the firm.
        return [_event("reload", {})]
    firm_id = principal.firm_id
    async with state.live.reads, state.sessions() as session:
        # Read afresh each time: a reporting currency chosen in another tab applies at once.
        chosen = await preferences.preferences_of(session, principal)

    async def rows_event() -> str:
        async with state.live.reads, state.sessions() as session:
            rows = await dashboard_queries.rows_of_clients(
                session,
                firm_id=firm_id,
                client_ids=notice.client_ids,
                weights=state.settings.health_weights,
                reporting_currency=chosen.reporting_currency,
            )
            counts = await dashboard_queries.state_counts(session, firm_id=firm_id)
        return _event(
            "rows",
            {
                "client_ids": sorted(str(client_id) for client_id in notice.client_ids),
                "rows": [_in_language(row, t).model_dump(mode="json") for row in rows],
                "states": counts.model_dump(),
            },
        )

    # The firm's other open pages that got the same notice, in the same language and
    # currency, are sent the same read.
    key = (firm_id, notice.heard, frozenset(notice.client_ids), chosen.reporting_currency, t.language)
    # New failures alone (a connection test of a card not yet saved) change no row.
    messages = [await state.live.shared_reads.read(key, rows_event)] if notice.client_ids else []
    if notice.new_failures:
        messages.append(_event("failures", {}))
    return messages
