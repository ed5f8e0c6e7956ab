"""OData v4 query options over in-memory records, the way Business Central answers them.

Supported: ``$filter`` (``eq ne gt ge lt le``, ``and``, ``or`` on one property, parentheses),
``$select``, ``$orderby``, ``$top``, ``$skip`` and ``$skiptoken`` (from nextLinks).
Everything else that BC accepts is rejected with a 400 that says the sandbox does not
support it yet, so a client never silently gets unfiltered data. Error texts copy the OData
library's wording that BC shows.

No web framework here: the BC routes turn :class:`ODataQueryError` into BC's error body.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

# ---------------------------------------------------------------------------------------
# Entity model
# ---------------------------------------------------------------------------------------


class EdmType(StrEnum):
    STRING = "Edm.String"
    GUID = "Edm.Guid"
    DECIMAL = "Edm.Decimal"
    INT32 = "Edm.Int32"
    INT64 = "Edm.Int64"
    BOOLEAN = "Edm.Boolean"
    DATE = "Edm.Date"
    DATETIME = "Edm.DateTimeOffset"
    ENUM = "Microsoft.NAV.enum"


@dataclass(frozen=True)
class Property:
    name: str
    type: EdmType
    # For enums: BC's enum type name (``glAccountCategory``) and its members, in BC's order,
    # as they appear on the wire (spaces encoded ``_x0020_``).
    enum_name: str = ""
    enum_members: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        """The type as OData error messages name it."""
        return f"Microsoft.NAV.{self.enum_name}" if self.type is EdmType.ENUM else self.type


@dataclass(frozen=True)
class EntityType:
    """An API page's entity: ``account`` in entity set ``accounts``."""

    name: str
    entity_set: str
    properties: tuple[Property, ...]
    # The key property: "id" for most pages, customerId / vendorId / accountId for reports.
    key: str = "id"

    def property(self, name: str) -> Property | None:
        return next((prop for prop in self.properties if prop.name == name), None)

    def require_property(self, name: str) -> Property:
        prop = self.property(name)
        if prop is None:
            raise ODataQueryError(f"Could not find a property named '{name}' on type 'Microsoft.NAV.{self.name}'.")
        return prop


# A record holds Python values: str, UUID, Decimal, int, bool, date, datetime or None.
Value = str | uuid.UUID | Decimal | int | bool | dt.date | dt.datetime | None
Record = Mapping[str, Value]


class ODataQueryError(ValueError):
    """A query option BC would reject (HTTP 400, code BadRequest)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------
# $filter
# ---------------------------------------------------------------------------------------

_OPERATOR_KINDS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_ORDERING_OPERATORS = frozenset({"gt", "ge", "lt", "le"})
_UNSUPPORTED_FUNCTIONS = frozenset(
    {
        "contains", "startswith", "endswith", "substring", "tolower", "toupper", "indexof",
        "length", "trim", "concat", "replace", "round", "floor", "ceiling", "year", "month",
        "day", "hour", "minute", "second", "now", "cast", "isof", "any", "all",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    property: Property
    operator: str
    literal: Value


@dataclass(frozen=True)
class Conjunction:
    operands: tuple[FilterExpression, ...]


@dataclass(frozen=True)
class Disjunction:
    operands: tuple[FilterExpression, ...]


FilterExpression = Comparison | Conjunction | Disjunction


class _TokenKind(StrEnum):
    STRING = "string"
    DATETIME = "datetime"
    DATE = "date"
    GUID = "guid"
    NUMBER = "number"
    WORD = "word"
    OPEN = "("
    CLOSE = ")"
    COMMA = ","
    END = "end"


@dataclass(frozen=True)
class _Token:
    kind: _TokenKind
    text: str
    position: int


# Order matters: the more specific literal shapes must win over numbers and words.
_TOKEN_PATTERNS: tuple[tuple[_TokenKind, re.Pattern[str]], ...] = (
    (_TokenKind.STRING, re.compile(r"'(?:[^']|'')*'")),
    (
        _TokenKind.GUID,
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ),
    (
        _TokenKind.DATETIME,
        re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})"),
    ),
    (_TokenKind.DATE, re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:])")),
    (_TokenKind.NUMBER, re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.])")),
    (_TokenKind.WORD, re.compile(r"[A-Za-z_][A-Za-z0-9_./]*")),
    (_TokenKind.OPEN, re.compile(r"\(")),
    (_TokenKind.CLOSE, re.compile(r"\)")),
    (_TokenKind.COMMA, re.compile(r",")),
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        for kind, pattern in _TOKEN_PATTERNS:
            match = pattern.match(text, position)
            if match:
                tokens.append(_Token(kind, match.group(), position))
                position = match.end()
                break
        else:
            raise _syntax_error(text, position)
    tokens.append(_Token(_TokenKind.END, "", len(text)))
    return tokens


def _syntax_error(text: str, position: int) -> ODataQueryError:
    # OData counts positions from 1 in its messages.
    return ODataQueryError(f"Syntax error at position {position + 1} in '{text}'.")


class _FilterParser:
    """Recursive descent: or-expression := and-expression ('or' and-expression)*."""

    def __init__(self, entity: EntityType, text: str) -> None:
        self._entity = entity
        self._text = text
        self._tokens = _tokenize(text)
        self._index = 0

    def parse(self) -> FilterExpression:
        expression = self._or_expression()
        if self._peek().kind is not _TokenKind.END:
            raise _syntax_error(self._text, self._peek().position)
        return expression

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _at_word(self, word: str) -> bool:
        token = self._peek()
        return token.kind is _TokenKind.WORD and token.text.lower() == word

    def _or_expression(self) -> FilterExpression:
        operands = [self._and_expression()]
        while self._at_word("or"):
            self._next()
            operands.append(self._and_expression())
        if len(operands) == 1:
            return operands[0]
        # BC's own restriction: 'or' only between conditions on the same field.
        if len({name for operand in operands for name in _property_names(operand)}) > 1:
            raise ODataQueryError("The 'OR' operator is not supported on distinct fields on an OData filter.")
        return Disjunction(tuple(operands))

    def _and_expression(self) -> FilterExpression:
        operands = [self._primary()]
        while self._at_word("and"):
            self._next()
            operands.append(self._primary())
        return operands[0] if len(operands) == 1 else Conjunction(tuple(operands))

    def _primary(self) -> FilterExpression:
        token = self._peek()
        if token.kind is _TokenKind.OPEN:
            self._next()
            inner = self._or_expression()
            if self._next().kind is not _TokenKind.CLOSE:
                raise _syntax_error(self._text, self._tokens[self._index - 1].position)
            return inner
        if self._at_word("not"):
            raise ODataQueryError("The sandbox does not support the 'not' operator in $filter.")
        return self._comparison()

    def _comparison(self) -> Comparison:
        name_token = self._next()
        if name_token.kind is not _TokenKind.WORD:
            raise _syntax_error(self._text, name_token.position)
        if self._peek().kind is _TokenKind.OPEN:
            function = name_token.text.lower()
            if function in _UNSUPPORTED_FUNCTIONS:
                raise ODataQueryError(f"The sandbox does not support the function '{function}' in $filter.")
            raise ODataQueryError(f"An unknown function with name '{name_token.text}' was found.")
        prop = self._entity.require_property(name_token.text)
        operator_token = self._next()
        operator = operator_token.text.lower()
        if operator_token.kind is not _TokenKind.WORD or operator not in _OPERATOR_KINDS:
            raise _syntax_error(self._text, operator_token.position)
        literal = _literal_for(prop, operator, self._next(), self._text)
        return Comparison(prop, operator, literal)


def _property_names(expression: FilterExpression) -> set[str]:
    if isinstance(expression, Comparison):
        return {expression.property.name}
    return {name for operand in expression.operands for name in _property_names(operand)}


def _literal_for(prop: Property, operator: str, token: _Token, text: str) -> Value:
    """Convert a literal token to the property's Python type, or explain the mismatch."""
    kind = token.kind
    if kind is _TokenKind.WORD and token.text == "null":
        if operator not in ("eq", "ne"):
            raise _incompatible(prop, "null", operator)
        return None
    if kind is _TokenKind.WORD and token.text in ("true", "false"):
        if prop.type is not EdmType.BOOLEAN:
            raise _incompatible(prop, EdmType.BOOLEAN, operator)
        if operator in _ORDERING_OPERATORS:
            raise _incompatible(prop, EdmType.BOOLEAN, operator)
        return token.text == "true"
    if kind is _TokenKind.STRING:
        value = token.text[1:-1].replace("''", "'")
        if prop.type is EdmType.STRING:
            return value
        if prop.type is EdmType.ENUM:
            member = _enum_member(prop, value)
            if member is None:
                raise ODataQueryError(
                    f"The string '{value}' is not a valid enumerated type constant for '{prop.type_name}'."
                )
            return member
        raise _incompatible(prop, EdmType.STRING, operator)
    if kind is _TokenKind.GUID:
        if prop.type is not EdmType.GUID:
            raise _incompatible(prop, EdmType.GUID, operator)
        if operator in _ORDERING_OPERATORS:
            raise _incompatible(prop, EdmType.GUID, operator)
        return uuid.UUID(token.text)
    if kind is _TokenKind.DATETIME:
        if prop.type is not EdmType.DATETIME:
            raise _incompatible(prop, EdmType.DATETIME, operator)
        return dt.datetime.fromisoformat(token.text)  # Python 3.11 reads the "Z" suffix
    if kind is _TokenKind.DATE:
        if prop.type is not EdmType.DATE:
            raise _incompatible(prop, EdmType.DATE, operator)
        try:
            return dt.date.fromisoformat(token.text)
        except ValueError:
            raise _syntax_error(text, token.position) from None
    if kind is _TokenKind.NUMBER:
        number_text = token.text.rstrip("mMdDfFlL")
        literal_type = EdmType.INT32 if re.fullmatch(r"-?\d+", number_text) else EdmType.DECIMAL
        if prop.type not in (EdmType.DECIMAL, EdmType.INT32, EdmType.INT64):
            raise _incompatible(prop, literal_type, operator)
        try:
            return Decimal(number_text)
        except InvalidOperation:
            raise _syntax_error(text, token.position) from None
    raise _syntax_error(text, token.position)


def _enum_member(prop: Property, text: str) -> str | None:
    wanted = _decode_enum(text)
    return next((m for m in prop.enum_members if _decode_enum(m) == wanted), None)


def _decode_enum(text: str) -> str:
    """BC encodes spaces and dots in enum names; accept both spellings in filters."""
    return text.replace("_x0020_", " ").replace("_x002E_", ".").casefold()


def _incompatible(prop: Property, literal_type: str, operator: str) -> ODataQueryError:
    return ODataQueryError(
        "A binary operator with incompatible types was detected. Found operand types"
        f" '{prop.type_name}' and '{literal_type}' for operator kind"
        f" '{_OPERATOR_KINDS[operator]}'."
    )


def parse_filter(entity: EntityType, text: str) -> FilterExpression:
    """Parse a ``$filter`` value against the entity's properties."""
    if not text.strip():
        raise ODataQueryError("The $filter query option must have a non-empty value.")
    return _FilterParser(entity, text).parse()


def top_level_comparisons(expression: FilterExpression | None) -> list[Comparison]:
    """The comparisons every matching record must satisfy (the operands of the top-level
    'and'): where BC's report pages read their parameters (agedAsOfDate, dateFilter)."""
    if expression is None or isinstance(expression, Disjunction):
        return []
    if isinstance(expression, Comparison):
        return [expression]
    return [c for operand in expression.operands for c in top_level_comparisons(operand)]


# An API query's filter column (``dateFilter_FilterOnly``): a parameter of the query, which
# its records function reads, never a condition on the rows (BC answers it as null).
FILTER_ONLY_SUFFIX = "_FilterOnly"


def matches(expression: FilterExpression, record: Record) -> bool:
    if isinstance(expression, Conjunction):
        return all(matches(operand, record) for operand in expression.operands)
    if isinstance(expression, Disjunction):
        return any(matches(operand, record) for operand in expression.operands)
    if expression.property.name.endswith(FILTER_ONLY_SUFFIX):
        return True
    return _compare(expression, record.get(expression.property.name))


def _compare(comparison: Comparison, value: Value) -> bool:
    literal = comparison.literal
    operator = comparison.operator
    if value is None or literal is None:
        equal = value is None and literal is None
        if operator == "eq":
            return equal
        if operator == "ne":
            return not equal
        return False  # null is neither greater nor smaller than anything
    left: Any = value
    right: Any = literal
    prop = comparison.property
    if prop.type is EdmType.ENUM:
        # Enums compare by their position in BC's enum, like option fields in AL.
        left = _enum_ordinal(prop, str(value))
        right = _enum_ordinal(prop, str(literal))
    elif prop.type is EdmType.DATETIME and isinstance(value, dt.datetime):
        left = _as_utc(value)
        right = _as_utc(literal) if isinstance(literal, dt.datetime) else literal
    elif prop.type in (EdmType.INT32, EdmType.INT64, EdmType.DECIMAL):
        left = Decimal(value) if isinstance(value, int | Decimal) else value
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: bool(a == b),
        "ne": lambda a, b: bool(a != b),
        "gt": lambda a, b: bool(a > b),
        "ge": lambda a, b: bool(a >= b),
        "lt": lambda a, b: bool(a < b),
        "le": lambda a, b: bool(a <= b),
    }
    return comparisons[operator](left, right)


def _enum_ordinal(prop: Property, member: str) -> int:
    decoded = _decode_enum(member)
    for ordinal, candidate in enumerate(prop.enum_members):
        if _decode_enum(candidate) == decoded:
            return ordinal
    return -1


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------
# Query options as a whole
# ---------------------------------------------------------------------------------------

# Options BC supports that the sandbox does not implement (yet): a clear 400, never a
# silently ignored option.
_NOT_YET_SUPPORTED = frozenset(
    {"$expand", "$count", "$search", "$apply", "$compute", "$deltatoken", "$format", "$levels",
     "$index"}
)  # fmt: skip
# Accepted and without effect on the sandbox's data.
_ACCEPTED_WITHOUT_EFFECT = frozenset({"$schemaversion"})


@dataclass(frozen=True)
class OrderBy:
    property: Property
    descending: bool


@dataclass(frozen=True)
class QueryOptions:
    filter: FilterExpression | None = None
    select: tuple[str, ...] | None = None
    order_by: tuple[OrderBy, ...] = ()
    top: int | None = None
    skip: int = 0
    # Opaque continuation from an @odata.nextLink (server-driven paging).
    skip_token: str | None = None


def parse_query_options(entity: EntityType, params: Iterable[tuple[str, str]]) -> QueryOptions:
    """Parse the ``$`` options of a request; other parameters (``company``) are ignored."""
    options: dict[str, str] = {}
    for raw_name, value in params:
        name = raw_name.lower()
        if not name.startswith("$"):
            continue
        if name in options:
            raise ODataQueryError(f"Query option '{raw_name}' was specified more than once.")
        options[name] = value
    for name in options:
        if name in _NOT_YET_SUPPORTED:
            raise ODataQueryError(f"The query option '{name}' is not supported by the sandbox.")
        if name not in (
            "$filter",
            "$select",
            "$orderby",
            "$top",
            "$skip",
            "$skiptoken",
            *_ACCEPTED_WITHOUT_EFFECT,
        ):
            raise ODataQueryError(f"The query parameter '{name}' is not supported.")

    return QueryOptions(
        filter=parse_filter(entity, options["$filter"]) if "$filter" in options else None,
        select=_parse_select(entity, options["$select"]) if "$select" in options else None,
        order_by=_parse_order_by(entity, options["$orderby"]) if "$orderby" in options else (),
        top=_parse_count("$top", options["$top"]) if "$top" in options else None,
        skip=_parse_count("$skip", options["$skip"]) if "$skip" in options else 0,
        skip_token=options.get("$skiptoken"),
    )


def _parse_select(entity: EntityType, text: str) -> tuple[str, ...] | None:
    names = [name.strip() for name in text.split(",")]
    if any(not name for name in names):
        raise ODataQueryError(f"Syntax error at position {len(text)} in '{text}'.")
    if "*" in names:
        return None
    for name in names:
        entity.require_property(name)
    return tuple(names)


def _parse_order_by(entity: EntityType, text: str) -> tuple[OrderBy, ...]:
    clauses: list[OrderBy] = []
    for clause in text.split(","):
        parts = clause.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise ODataQueryError(f"Syntax error at position {len(text)} in '{text}'.")
        clauses.append(OrderBy(entity.require_property(parts[0]), len(parts) == 2 and parts[1] == "desc"))
    return tuple(clauses)


def _parse_count(option: str, text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise ODataQueryError(
            f"Invalid value '{text}' for {option} query option found. The {option} query"
            " option requires a non-negative integer value."
        )
    return int(text)


def apply_query(records: Iterable[Record], options: QueryOptions) -> list[Record]:
    """Filter, order and slice records (selection happens at serialisation)."""
    selected = [r for r in records if options.filter is None or matches(options.filter, r)]
    # Sort by the last key first; Python's sort is stable, so earlier keys win.
    for order in reversed(options.order_by):
        selected.sort(key=_sort_key(order.property), reverse=order.descending)
    end = None if options.top is None else options.skip + options.top
    return selected[options.skip : end]


def _sort_key(prop: Property) -> Callable[[Record], tuple[bool, Any]]:
    def key(record: Record) -> tuple[bool, Any]:
        value = record.get(prop.name)
        if value is None:
            return (False, 0)  # nulls first, as SQL Server sorts them
        if prop.type is EdmType.ENUM:
            return (True, _enum_ordinal(prop, str(value)))
        if isinstance(value, str):
            return (True, value.casefold())
        if isinstance(value, uuid.UUID):
            return (True, str(value))
        return (True, value)

    return key


# ---------------------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------------------

JsonValue = str | int | float | bool | None


def to_json_value(value: Value) -> JsonValue:
    """BC's wire format: GUIDs lower-case, dates ``YYYY-MM-DD``, datetimes UTC with ``Z``,
    decimals as JSON numbers."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, Decimal):
        # JSON has no decimal type; BC writes numbers. A two-decimal amount below 10^13
        # survives the float round trip exactly, which is all the sandbox generates.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        text = _as_utc(value).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return value.isoformat()


def serialise(entity: EntityType, record: Record, select: Sequence[str] | None) -> dict[str, JsonValue]:
    """One entity as JSON, properties in the page's order, limited to ``$select``."""
    wanted = None if select is None else frozenset(select)
    return {
        prop.name: to_json_value(record.get(prop.name))
        for prop in entity.properties
        if wanted is None or prop.name in wanted
    }
