"""Applying events to the read model, one batch per transaction: load, fold, write.

The rules live in ``rules.py`` as pure functions. This layer only

1. loads, in a statement or two per table, every row the batch's events name by their
   ids, and locks the client and company rows among them (``load``);
2. folds the batch's events through the rules, in stream order, in memory;
3. works out what changed (``changed_rows``) and writes it: rows the rules removed are
   deleted, new and changed rows are upserted in one statement per table, and each
   stream's position once (``store``).

Rows are read and written with SQLAlchemy Core, not the ORM: a batch is a handful of
statements whatever its size, which is what lets a rebuild fold thousands of events at a
time through the very same code. A rebuild, the only writer of its empty target, takes a
batch's rows from ``ReadModelInMemory`` (what it wrote) instead of reading them back, and
folds there, in a process of its own, while its main process reads and writes.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Table, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import SQLModel

from hub_common.consumers import Delivery
from hub_common.db import lock_until_commit, upsert
from hub_common.events import ClientAdded, Envelope, EventData, FirmCreated, RefreshScheduleSet, first_refresh_id
from hub_gateway.readmodel.columns import FIGURE_COLUMNS, figure_values
from hub_gateway.readmodel.models import (
    AccountantRow,
    AlertRow,
    ClientRow,
    CompanyRateRow,
    CompanyRow,
    ConnectionTestRow,
    FailureRow,
    FirmRow,
    ProjectionPosition,
    RefreshRow,
    TenantAccessRow,
)
from hub_gateway.readmodel.rules import fold
from hub_gateway.readmodel.state import (
    AccountantState,
    AlertState,
    Changes,
    ClientState,
    CompanyRateState,
    CompanyState,
    ConnectionTestState,
    FailureState,
    FirmState,
    ModelState,
    RefreshState,
    StoredEvent,
    TenantAccessState,
)

__all__ = ["Changes", "ReadModelInMemory", "Written", "apply_batch", "apply_events", "store", "stored_events"]

StateT = TypeVar("StateT")

# An IN list this long at most per statement: far below every driver's limit on parameters.
_IN_CHUNK = 1000
_FIGURE_ATTRIBUTES = tuple(column.attribute for column in FIGURE_COLUMNS)
# A company state's fields that are columns as they are (its figures are turned into theirs).
_COMPANY_COLUMNS = tuple(
    item.name for item in fields(CompanyState) if item.name not in {"figures", "figures_json", "read_figures"}
)


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


@dataclass(frozen=True, eq=False)
class _Stored(Generic[StateT]):
    """How one kind of state is a row of one table, and where it is in a ``ModelState``."""

    table: Table
    state: type[StateT]
    # Puts a loaded state where the rules look for it.
    place: Callable[[ModelState, Hashable, StateT], None]
    # Every state of this kind the rules left in the model.
    held: Callable[[ModelState], Iterable[StateT]]

    @cached_property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.table.primary_key.columns)

    @cached_property
    def key(self) -> Callable[[Mapping[str, Any]], Hashable]:
        """A row's key: its one key column's value, or a tuple of them (called per row)."""
        names = self.key_columns
        if len(names) == 1:
            return operator.itemgetter(names[0])
        return lambda values: tuple(values[name] for name in names)

    def to_state(self, values: Mapping[str, Any]) -> StateT:
        return self.state(**values)

    def to_row(self, state: StateT) -> dict[str, Any]:
        return {item.name: getattr(state, item.name) for item in fields(self.state)}  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[Callable[[str], _Stored[Any]], tuple[str]]:
        # One instance per table in every process: a rebuild's batches cross from the
        # process that folds them to the one that writes them keyed by these.
        return (_stored_for_table, (self.table.name,))


@dataclass(frozen=True, eq=False)
class _StoredCompany(_Stored[CompanyState]):
    """A company's figures are one column each, and one dict in its state."""

    def to_state(self, values: Mapping[str, Any]) -> CompanyState:
        plain = {name: value for name, value in values.items() if name not in _FIGURE_ATTRIBUTES}
        return CompanyState(**plain, figures={name: values[name] for name in _FIGURE_ATTRIBUTES})

    def to_row(self, state: CompanyState) -> dict[str, Any]:
        row = {name: getattr(state, name) for name in _COMPANY_COLUMNS}
        if state.read_figures is not None:
            figures_json = state.read_figures.model_dump_json()
            return row | figure_values(state.read_figures) | {"figures_json": figures_json}
        return (
            row | {name: state.figures.get(name) for name in _FIGURE_ATTRIBUTES} | {"figures_json": state.figures_json}
        )


def _by_key(attribute: str) -> Callable[[ModelState, Hashable, Any], None]:
    """Places a state in the model's dict ``attribute``, under its row's key."""

    def place(model: ModelState, key: Hashable, state: Any) -> None:
        getattr(model, attribute)[key] = state

    return place


FIRMS = _Stored(_table(FirmRow), FirmState, _by_key("firms"), lambda model: model.firms.values())
ACCOUNTANTS = _Stored(
    _table(AccountantRow), AccountantState, _by_key("accountants"), lambda model: model.accountants.values()
)
CLIENTS = _Stored(_table(ClientRow), ClientState, _by_key("clients"), lambda model: model.clients.values())
COMPANIES = _StoredCompany(
    _table(CompanyRow),
    CompanyState,
    lambda model, _, company: model.companies_of(company.client_id).__setitem__(company.company_id, company),
    lambda model: model.all_companies(),
)
COMPANY_RATES = _Stored(
    _table(CompanyRateRow),
    CompanyRateState,
    lambda model, _, rate: model.add_rate(rate),
    lambda model: model.all_rates(),
)
REFRESHES = _Stored(_table(RefreshRow), RefreshState, _by_key("refreshes"), lambda model: model.refreshes.values())
CONNECTION_TESTS = _Stored(
    _table(ConnectionTestRow),
    ConnectionTestState,
    _by_key("connection_tests"),
    lambda model: model.connection_tests.values(),
)
FAILURES = _Stored(
    _table(FailureRow),
    FailureState,
    lambda model, _, failure: model.failures.add(failure),
    lambda model: model.failures.entries.values(),
)
TENANT_ACCESS = _Stored(
    _table(TenantAccessRow),
    TenantAccessState,
    _by_key("tenant_access"),
    lambda model: model.tenant_access.values(),
)
ALERTS = _Stored(_table(AlertRow), AlertState, _by_key("alerts"), lambda model: model.alerts.values())
POSITIONS = _table(ProjectionPosition)
# Every kind of state, with the table it is stored in (a test checks fields against columns).
STORED: tuple[_Stored[Any], ...] = (
    FIRMS,
    ACCOUNTANTS,
    CLIENTS,
    COMPANIES,
    COMPANY_RATES,
    REFRESHES,
    CONNECTION_TESTS,
    FAILURES,
    TENANT_ACCESS,
    ALERTS,
)
_STORED_BY_TABLE = {stored.table.name: stored for stored in STORED}


def _stored_for_table(name: str) -> _Stored[Any]:
    return _STORED_BY_TABLE[name]


def stored_events(batch: Sequence[tuple[Envelope[EventData], Delivery]]) -> list[StoredEvent[Any]]:
    return [StoredEvent(envelope, delivery.stream, delivery.stream_sequence) for envelope, delivery in batch]


@dataclass
class _Named:
    """The ids a batch's events name: the rows they may touch."""

    firms: set[uuid.UUID] = field(default_factory=set)
    accountants: set[uuid.UUID] = field(default_factory=set)
    clients: set[uuid.UUID] = field(default_factory=set)
    refreshes: set[uuid.UUID] = field(default_factory=set)
    connection_tests: set[uuid.UUID] = field(default_factory=set)
    # Events that carry a failure, by id: a Check Errors entry is keyed by its event.
    failures: set[uuid.UUID] = field(default_factory=set)
    tenant_access: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    episodes: set[uuid.UUID] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    # Whether an event may change a firm's row (its creation, its schedule).
    firm_changes: bool = False

    @classmethod
    def by(cls, events: Iterable[StoredEvent[Any]]) -> _Named:
        named = cls()
        for event in events:
            envelope, data = event.envelope, event.envelope.data
            named.firms.add(envelope.firm_id)
            named.streams.add(event.stream)
            plan = _naming_plan(type(data))
            if plan.carries_failure:
                named.failures.add(envelope.id)
            for ids, attribute in plan.ids:
                if isinstance(value := getattr(data, attribute), uuid.UUID):
                    getattr(named, ids).add(value)
            if plan.names_tenant:
                named.tenant_access.add((envelope.firm_id, data.tenant_id))
            if isinstance(data, ClientAdded):
                # Its first refresh may have said something before it (another replica).
                named.refreshes.add(first_refresh_id(envelope))
            elif isinstance(data, FirmCreated) or (isinstance(data, RefreshScheduleSet) and data.client_id is None):
                named.firm_changes = True
        return named


@dataclass(frozen=True)
class _NamingPlan:
    """Which ids an event type's data has, worked out once per type."""

    ids: tuple[tuple[str, str], ...]  # (``_Named`` set, data field)
    carries_failure: bool
    names_tenant: bool


# Which of ``_Named``'s sets an id field of an event goes to.
_NAMING_FIELDS = (
    ("accountants", "accountant_id"),
    ("clients", "client_id"),
    ("refreshes", "refresh_id"),
    ("connection_tests", "test_id"),
    ("episodes", "episode_id"),
)


_NAMING_PLANS: dict[type[EventData], _NamingPlan] = {}


def _naming_plan(data_type: type[EventData]) -> _NamingPlan:
    plan = _NAMING_PLANS.get(data_type)
    if plan is None:
        fields_of_type = data_type.model_fields
        plan = _NAMING_PLANS[data_type] = _NamingPlan(
            ids=tuple((ids, attribute) for ids, attribute in _NAMING_FIELDS if attribute in fields_of_type),
            carries_failure="failure" in fields_of_type,
            names_tenant="tenant_id" in fields_of_type,
        )
    return plan


@dataclass
class Loaded:
    """A batch's rows as the database held them, and as state for the rules."""

    model: ModelState
    # Each kind's rows as loaded, by key: what ``write`` compares the folded states with.
    rows: dict[_Stored[Any], dict[Hashable, dict[str, Any]]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)


def _chunks(values: Collection[Any]) -> Iterator[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start : start + _IN_CHUNK]


async def _select(
    connection: AsyncConnection,
    stored: _Stored[Any],
    column: str,
    values: Collection[Any],
    *,
    where: ColumnElement[bool] | None = None,
    lock: bool = False,
) -> list[dict[str, Any]]:
    """The rows whose ``column`` is one of ``values``, locked in key order if asked."""
    table = stored.table
    found: list[dict[str, Any]] = []
    for chunk in _chunks(values):
        statement = select(table).where(table.c[column].in_(chunk))
        if where is not None:
            statement = statement.where(where)
        if lock:
            # One order for every transaction, so two never wait on each other in a cycle.
            statement = statement.order_by(*(table.c[name] for name in stored.key_columns)).with_for_update()
        found.extend(dict(row._mapping) for row in await connection.execute(statement))
    return found


async def load(session: AsyncSession, events: Sequence[StoredEvent[Any]], applied_at: datetime) -> Loaded:
    """The rows the events may touch, as state; the client and company rows locked.

    The events and snapshots projections run concurrently (and so may several gateway
    replicas): without the locks, two transactions could read the same client's rows and
    the later commit would silently undo the other's change. Clients are locked first,
    then their companies, each by id. SQLite has no row locks: there the transaction takes
    the database's write lock before it reads (within one process the gateway's projection
    lock already serializes the writers; this covers a second gateway process on the same
    file, whose commit between this read and this write would otherwise be undone).
    """
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        # The first statement of the transaction: the driver would begin it only at the
        # first write, after the reads, and a deferred begin could not take the lock then.
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
    named = _Named.by(events)
    if connection.dialect.name == "postgresql":
        await _take_turns_creating(session, connection, named)
    waiting = FAILURES.table.c.next_attempt_at.is_not(None)
    wanted: list[tuple[_Stored[Any], list[dict[str, Any]]]] = [
        (CLIENTS, await _select(connection, CLIENTS, "client_id", named.clients, lock=True)),
        (COMPANIES, await _select(connection, COMPANIES, "client_id", named.clients, lock=True)),
        # A company's rates change with it (the company rows above are locked).
        (COMPANY_RATES, await _select(connection, COMPANY_RATES, "client_id", named.clients)),
        # Locked only in a batch that may change them: every event names its firm.
        (FIRMS, await _select(connection, FIRMS, "firm_id", named.firms, lock=named.firm_changes)),
        (ACCOUNTANTS, await _select(connection, ACCOUNTANTS, "accountant_id", named.accountants, lock=True)),
        # A refresh's rows change with its client's (locked above), as do its failures'.
        (REFRESHES, await _select(connection, REFRESHES, "refresh_id", named.refreshes)),
        (CONNECTION_TESTS, await _select(connection, CONNECTION_TESTS, "test_id", named.connection_tests, lock=True)),
        (FAILURES, await _select(connection, FAILURES, "failure_id", named.failures)),
        # Waits for a retry are what a later outcome of the same client ends.
        (FAILURES, await _select(connection, FAILURES, "client_id", named.clients, where=waiting)),
        (TENANT_ACCESS, await _tenant_access(connection, named.tenant_access, lock=True)),
        (ALERTS, await _select(connection, ALERTS, "episode_id", named.episodes, lock=True)),
    ]
    positions = await connection.execute(select(POSITIONS).where(POSITIONS.c.stream.in_(sorted(named.streams))))
    return _loaded(applied_at, wanted, {row.stream: row.sequence for row in positions})


async def _take_turns_creating(session: AsyncSession, connection: AsyncConnection, named: _Named) -> None:
    """Wait for every other transaction about to create a row this batch may create too.

    ``load`` locks the rows that exist; one that does not cannot be. Two replicas (or the
    events' and the snapshots' projections) each folding an event of a row not there yet
    would each write it whole, and the later commit would undo the other: a client removed
    in one batch and added in the other came back. So the keys of the batch's rows that do
    not exist yet are locked (advisory locks, until the commit), before any row is: the later
    transaction then reads what the earlier one wrote. Existing rows take no such lock.
    """
    absent: list[str] = []
    for stored, column, keys in (
        (FIRMS, "firm_id", named.firms),
        (ACCOUNTANTS, "accountant_id", named.accountants),
        (CLIENTS, "client_id", named.clients),
        (CONNECTION_TESTS, "test_id", named.connection_tests),
        (ALERTS, "episode_id", named.episodes),
    ):
        found: set[Any] = set()
        for chunk in _chunks(keys):
            found.update(
                await connection.scalars(select(stored.table.c[column]).where(stored.table.c[column].in_(chunk)))
            )
        absent.extend(f"readmodel:{stored.table.name}:{key}" for key in keys - found)
    if named.tenant_access:
        granted = {(row["firm_id"], row["tenant_id"]) for row in await _tenant_access(connection, named.tenant_access)}
        absent.extend(f"readmodel:{TENANT_ACCESS.table.name}:{key}" for key in named.tenant_access - granted)
    await lock_until_commit(session, *absent)


def _loaded(
    applied_at: datetime, wanted: list[tuple[_Stored[Any], list[dict[str, Any]]]], positions: dict[str, int]
) -> Loaded:
    """A batch's rows, as loaded, and as the state the rules change."""
    loaded = Loaded(ModelState(applied_at=applied_at), positions=positions)
    for stored, rows in wanted:
        loaded_rows = loaded.rows.setdefault(stored, {})
        for row in rows:
            loaded_rows[stored.key(row)] = row
    for stored, rows_by_key in loaded.rows.items():
        for key, row in rows_by_key.items():
            stored.place(loaded.model, key, stored.to_state(row))
    loaded.model.positions = dict(positions)
    return loaded


async def _tenant_access(
    connection: AsyncConnection, keys: set[tuple[uuid.UUID, uuid.UUID]], *, lock: bool = False
) -> list[dict[str, Any]]:
    """The (firm, tenant) rows named, read by tenant among the batch's firms only: the
    sample tenant has a row for every firm of the hub."""
    firms = TENANT_ACCESS.table.c.firm_id.in_(sorted({firm_id for firm_id, _ in keys}))
    rows = await _select(
        connection, TENANT_ACCESS, "tenant_id", {tenant_id for _, tenant_id in keys}, where=firms, lock=lock
    )
    return [row for row in rows if (row["firm_id"], row["tenant_id"]) in keys]


@dataclass
class Written:
    """What a batch changed: each kind's new and changed rows by key, removed keys, and the
    positions of the streams it advanced. Plain values, so it can cross a process boundary
    (a rebuild folds in another process than the one that writes)."""

    rows: dict[_Stored[Any], dict[Hashable, dict[str, Any]]] = field(default_factory=dict)
    removed: dict[_Stored[Any], list[Hashable]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    advanced: dict[str, int] = field(default_factory=dict)


def changed_rows(loaded: Loaded) -> Written:
    """Compare the folded states with the rows as loaded: what to delete, upsert, advance."""
    written = Written(positions=dict(loaded.model.positions))
    for stored in STORED:
        before = loaded.rows.get(stored, {})
        after = {}
        for state in stored.held(loaded.model):
            row = stored.to_row(state)
            after[stored.key(row)] = row
        written.removed[stored] = [key for key in before if key not in after]
        written.rows[stored] = {key: row for key, row in after.items() if before.get(key) != row}
    written.advanced = {
        stream: sequence
        for stream, sequence in sorted(loaded.model.positions.items())
        if loaded.positions.get(stream) != sequence
    }
    return written


async def store(session: AsyncSession, written: Written) -> None:
    """Delete the removed rows, upsert the new and changed ones, advance the positions."""
    connection = await session.connection()
    for stored in STORED:
        table = stored.table
        if removed := written.removed.get(stored):
            names = stored.key_columns
            statement = delete(table).where(*(table.c[name] == bindparam(f"key_{name}") for name in names))
            keys = [key if isinstance(key, tuple) else (key,) for key in removed]
            parameters = [dict(zip((f"key_{name}" for name in names), key, strict=True)) for key in keys]
            await connection.execute(statement, parameters)
        if changed := list(written.rows.get(stored, {}).values()):
            # In key order, so concurrent writers take row locks in one order.
            changed.sort(key=lambda row: str(stored.key(row)))
            await connection.execute(upsert(connection.dialect, table), changed)
    if written.advanced:
        # Only ever forward: another replica's batch may have advanced the stream further.
        forward = upsert(
            connection.dialect, POSITIONS, only_if=lambda excluded: POSITIONS.c.sequence < excluded.sequence
        )
        await connection.execute(
            forward, [{"stream": stream, "sequence": sequence} for stream, sequence in written.advanced.items()]
        )


class ReadModelInMemory:
    """The rows of a read model that one writer builds from nothing, kept in memory too.

    A rebuild is the only writer of its empty target, so what the target holds is what it
    wrote: a batch's rows are taken from here instead of being read back. Rows are kept as
    written (column values), and indexed the way ``load`` selects them.
    """

    def __init__(self) -> None:
        self._rows: dict[_Stored[Any], dict[Hashable, dict[str, Any]]] = {stored: {} for stored in STORED}
        self._companies_by_client: dict[uuid.UUID, set[Hashable]] = {}
        self._rates_by_client: dict[uuid.UUID, set[Hashable]] = {}
        self._waiting_by_client: dict[uuid.UUID, set[Hashable]] = {}
        self._positions: dict[str, int] = {}

    def load(self, events: Sequence[StoredEvent[Any]], applied_at: datetime) -> Loaded:
        """What ``load`` would read from the database, taken from memory."""
        named = _Named.by(events)

        def by_key(stored: _Stored[Any], keys: Iterable[Hashable]) -> list[dict[str, Any]]:
            rows = self._rows[stored]
            return [rows[key] for key in keys if key in rows]

        def of_clients(stored: _Stored[Any], index: dict[uuid.UUID, set[Hashable]]) -> list[dict[str, Any]]:
            return by_key(stored, (key for client_id in named.clients for key in index.get(client_id, ())))

        wanted: list[tuple[_Stored[Any], list[dict[str, Any]]]] = [
            (CLIENTS, by_key(CLIENTS, named.clients)),
            (COMPANIES, of_clients(COMPANIES, self._companies_by_client)),
            (COMPANY_RATES, of_clients(COMPANY_RATES, self._rates_by_client)),
            (FIRMS, by_key(FIRMS, named.firms)),
            (ACCOUNTANTS, by_key(ACCOUNTANTS, named.accountants)),
            (REFRESHES, by_key(REFRESHES, named.refreshes)),
            (CONNECTION_TESTS, by_key(CONNECTION_TESTS, named.connection_tests)),
            (FAILURES, by_key(FAILURES, named.failures)),
            (FAILURES, of_clients(FAILURES, self._waiting_by_client)),
            (TENANT_ACCESS, by_key(TENANT_ACCESS, named.tenant_access)),
            (ALERTS, by_key(ALERTS, named.episodes)),
        ]
        positions = {stream: self._positions[stream] for stream in named.streams if stream in self._positions}
        return _loaded(applied_at, wanted, positions)

    def fold(self, events: Sequence[StoredEvent[Any]], applied_at: datetime) -> Written:
        """Fold a batch through the rules on the rows held here; what the target must write.

        What it returns is kept here at once: the caller writes it before the next batch's
        rows are taken, and if that write fails, so does the rebuild.
        """
        loaded = self.load(events, applied_at)
        fold(loaded.model, events)
        written = changed_rows(loaded)
        self.keep(written)
        return written

    def keep(self, written: Written) -> None:
        """Take in what a batch wrote."""
        for stored, removed in written.removed.items():
            rows = self._rows[stored]
            for key in removed:
                self._unindex(stored, rows.pop(key))
        for stored, changed in written.rows.items():
            rows = self._rows[stored]
            for key, row in changed.items():
                if key in rows:
                    self._unindex(stored, rows[key])
                rows[key] = row
                self._index(stored, key, row)
        self._positions.update(written.positions)

    def _indexes(self, stored: _Stored[Any], row: dict[str, Any]) -> dict[uuid.UUID, set[Hashable]] | None:
        if stored is COMPANIES:
            return self._companies_by_client
        if stored is COMPANY_RATES:
            return self._rates_by_client
        if stored is FAILURES and row["next_attempt_at"] is not None and row["client_id"] is not None:
            return self._waiting_by_client
        return None

    def _index(self, stored: _Stored[Any], key: Hashable, row: dict[str, Any]) -> None:
        if (index := self._indexes(stored, row)) is not None:
            index.setdefault(row["client_id"], set()).add(key)

    def _unindex(self, stored: _Stored[Any], row: dict[str, Any]) -> None:
        if (index := self._indexes(stored, row)) is not None:
            index.get(row["client_id"], set()).discard(stored.key(row))


async def apply_events(session: AsyncSession, events: Sequence[StoredEvent[Any]], applied_at: datetime) -> Changes:
    """Apply events in stream order and advance each stream's position, in one transaction."""
    loaded = await load(session, events, applied_at)
    fold(loaded.model, events)
    await store(session, changed_rows(loaded))
    return loaded.model.changes


async def apply_batch(
    session: AsyncSession,
    batch: list[tuple[Envelope[EventData], Delivery]],
    applied_at: datetime,
) -> Changes:
    """Apply a consumer's batch (events with their deliveries) in one transaction."""
    return await apply_events(session, stored_events(batch), applied_at)
