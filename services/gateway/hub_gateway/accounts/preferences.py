"""Each accountant's dashboard columns, locale and page size, and their saved views."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.db import lock_until_commit, upsert
from hub_common.events import REQUIRED_LINE
from hub_common.i18n import N_
from hub_common.logging import get_logger
from hub_common.money import stored_number
from hub_gateway.accounts.models import PreferencesRow, SavedViewRow
from hub_gateway.auth import Principal
from hub_gateway.dashboard.queries import SORT_KEYS, DashboardQuery
from hub_gateway.readmodel.columns import DEFAULT_COLUMNS, FIGURES_BY_KEY


def _figure_key(value: str) -> str:
    if value not in FIGURES_BY_KEY:
        raise ValueError(f"unknown column; the columns are {', '.join(FIGURES_BY_KEY)}")
    return value


FigureKey = Annotated[
    str, AfterValidator(_figure_key), WithJsonSchema({"type": "string", "enum": list(FIGURES_BY_KEY)})
]
# A BCP 47 language tag as browsers send it: "en-GB", "de", "pt-BR", "zh-Hant-TW", "es-419",
# "de-CH-1996": language, then script, region and variants each in the shape browsers'
# Intl accepts ("en-12" it refuses, and every number on the page would fail with it).
_LOCALE = re.compile(
    r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3})){0,2}"
)
PAGE_SIZES = (25, 50, 100, 200, 500)
# An ISO 4217 code's shape: three capital letters ("EUR"); whether BC has a rate for it is
# each company's own matter, answered row by row.
_CURRENCY = re.compile(r"[A-Z]{3}")

logger = get_logger(__name__)


def _distinct(columns: list[str]) -> list[str]:
    if len(set(columns)) != len(columns):
        raise ValueError(N_("a column is chosen twice"))
    return columns


def _locale(value: str | None) -> str | None:
    if value is not None and not _LOCALE.fullmatch(value):
        raise ValueError(N_("must be a language tag such as en-GB or de-DE"))
    return value


def _currency(value: str | None) -> str | None:
    if value is not None and not _CURRENCY.fullmatch(value):
        raise ValueError(N_("must be an ISO 4217 currency code: three capital letters such as EUR"))
    return value


ReportingCurrency = Annotated[
    str | None,
    AfterValidator(_currency),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": "^[A-Z]{3}$"}, {"type": "null"}]}),
]

Columns = Annotated[list[FigureKey], Field(max_length=len(FIGURES_BY_KEY)), AfterValidator(_distinct)]


class Preferences(BaseModel):
    """The figure columns in the order shown; the locale (None: the browser's), which is also
    the accountant's language when the hub speaks it (hub_common.i18n.choose_language); rows
    per page; the currency amounts are shown in (None: each company's own)."""

    model_config = ConfigDict(extra="forbid")

    columns: Columns = list(DEFAULT_COLUMNS)
    locale: Annotated[str | None, AfterValidator(_locale)] = None
    page_size: Literal[PAGE_SIZES] = 100  # type: ignore[valid-type]
    reporting_currency: ReportingCurrency = None


async def preferences_of(session: AsyncSession, principal: Principal) -> Preferences:
    row = await session.get(PreferencesRow, principal.accountant_id)
    if row is None or row.firm_id != principal.firm_id:
        return Preferences()
    # Stored by an earlier version perhaps: a column since retired is dropped, not an error;
    # a value a later rule refuses (a locale tag browsers reject) is the default, alone.
    columns = [key for key in json.loads(row.columns_json) if key in FIGURES_BY_KEY]
    stored = {
        "columns": columns,
        "locale": row.locale,
        "page_size": row.page_size,
        "reporting_currency": row.reporting_currency,
    }
    try:
        return Preferences.model_validate(stored)
    except ValidationError as refused:
        wrong = {str(error["loc"][0]) for error in refused.errors() if error["loc"]}
        logger.warning(
            "stored preferences no longer valid; defaults used for them",
            accountant_id=str(row.accountant_id),
            fields=sorted(wrong),
        )
        kept = {name: value for name, value in stored.items() if name not in wrong}
        try:
            return Preferences.model_validate(kept)
        except ValidationError:
            return Preferences()


async def save_preferences(session: AsyncSession, principal: Principal, preferences: Preferences) -> Preferences:
    # One statement, insert or update: two first saves at once (two tabs) would both find
    # no row and both insert, and the second insert would break the key.
    saved = {
        "accountant_id": principal.accountant_id,
        "firm_id": principal.firm_id,
        "columns_json": json.dumps(preferences.columns),
        "locale": preferences.locale,
        "page_size": preferences.page_size,
        "reporting_currency": preferences.reporting_currency,
        "updated_at": datetime.now(UTC),
    }
    table: Table = PreferencesRow.__table__  # type: ignore[attr-defined]
    await session.execute(upsert(session.get_bind().dialect, table), saved)
    return preferences


class ViewDefinition(BaseModel):
    """What a saved view restores: the filters and sort (never a page), and the columns."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=100), REQUIRED_LINE]
    query: DashboardQuery
    columns: Columns | None = None


class SavedView(ViewDefinition):
    view_id: uuid.UUID
    created_at: datetime


class DuplicateViewName(Exception):
    pass


MAX_VIEWS_PER_ACCOUNTANT = 100


class TooManyViews(Exception):
    pass


def _readable_threshold(threshold: object) -> object:
    """A threshold as saved, its value read as stored numbers are (a zero saved with an
    exponent beyond 28, before they were refused, is 0)."""
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), str):
        return threshold
    try:
        return {**threshold, "value": str(stored_number(threshold["value"]))}
    except ArithmeticError:
        return threshold  # not a number at all: refused as before


def _known_query(query: dict[str, Any]) -> dict[str, Any]:
    """A stored view's query without what names a figure since retired: its thresholds on
    one are dropped and a sort by one goes back to the default, as ``preferences_of`` drops
    such columns. Left invalid, the whole view vanished from the list while its row stayed:
    its name was taken (a 409) and it could not be chosen to be deleted."""
    known = dict(query)
    thresholds = known.get("thresholds") or []
    known["thresholds"] = [
        _readable_threshold(t) for t in thresholds if not isinstance(t, dict) or t.get("column") in FIGURES_BY_KEY
    ]
    if "sort" in known and known["sort"] not in SORT_KEYS:
        known.pop("sort")
        known.pop("descending", None)
    return known


def _saved(row: SavedViewRow) -> SavedView:
    stored = json.loads(row.query_json)
    # Every column of it retired: the view keeps the accountant's columns (None), not none.
    columns = [key for key in stored.get("columns") or [] if key in FIGURES_BY_KEY] or None
    return SavedView(
        view_id=row.view_id,
        name=row.name,
        query=DashboardQuery.model_validate(_known_query(stored["query"])),
        columns=columns,
        created_at=row.created_at,
    )


async def saved_views(session: AsyncSession, principal: Principal) -> list[SavedView]:
    rows = await session.execute(
        select(SavedViewRow)
        .where(
            col(SavedViewRow.accountant_id) == principal.accountant_id,
            col(SavedViewRow.firm_id) == principal.firm_id,
        )
        .order_by(col(SavedViewRow.name))
    )
    views: list[SavedView] = []
    for row in rows.scalars():
        try:
            views.append(_saved(row))
        except (ValidationError, KeyError, ValueError):
            # Stored otherwise unreadable (retired figures are dropped by _saved): leave it
            # out, keep the rest.
            logger.warning("saved view no longer valid; left out", view_id=str(row.view_id))
    return views


async def save_view(session: AsyncSession, principal: Principal, definition: ViewDefinition) -> SavedView:
    # Saves at once (on any replica) count in turn: each would otherwise see room for itself.
    await lock_until_commit(session, f"saved-views:{principal.accountant_id}")
    if len(await saved_views(session, principal)) >= MAX_VIEWS_PER_ACCOUNTANT:
        raise TooManyViews
    query = definition.query.model_copy(update={"offset": 0})
    row = SavedViewRow(
        view_id=uuid.uuid4(),
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        name=definition.name,
        query_json=json.dumps({"query": query.model_dump(mode="json"), "columns": definition.columns}),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:
        raise DuplicateViewName(definition.name) from error
    return _saved(row)


async def delete_view(session: AsyncSession, principal: Principal, view_id: uuid.UUID) -> bool:
    row = await session.get(SavedViewRow, view_id)
    if row is None or row.accountant_id != principal.accountant_id or row.firm_id != principal.firm_id:
        return False
    await session.delete(row)
    return True
