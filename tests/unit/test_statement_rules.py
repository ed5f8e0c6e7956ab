"""The fetcher's pure rules for statements: BC's formatted amounts, the fiscal year a
date falls in, BC's escaped enum values, and a compressed command reply."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from decimal import Decimal

import pytest

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_fetcher.statements import decode_enum, fiscal_year_start, lone_mark_is_decimal, parse_formatted_amount


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("72,893.84", "72893.84"),  # en-US, as the sandbox and the docs show it
        ("72.893,84", "72893.84"),  # de-DE
        ("72 893,84", "72893.84"),  # fr-FR (with a no-break space below)
        ("72\u00a0893,84", "72893.84"),
        ("72'893.84", "72893.84"),  # de-CH
        ("-1,234.50", "-1234.50"),
        ("1,234.50-", "-1234.50"),
        ("(1,234.50)", "-1234.50"),
        ("1,234", "1234"),  # a lone separator before three digits groups thousands
        ("12,5", "12.5"),
        ("1.234.567", "1234567"),
        ("0.00", "0.00"),
    ],
)
def test_formatted_amounts_are_read_whatever_the_region(text: str, amount: str) -> None:
    assert parse_formatted_amount(text) == Decimal(amount)


@pytest.mark.parametrize(
    ("answer", "decimal"),
    [
        (["12.345", "0.000"], True),  # three decimals (KWD): the zero says so
        (["12,345", "0,000"], True),  # the same with a decimal comma
        (["1,234.567", "12.345"], True),
        (["0.125"], True),  # a group of thousands never starts with 0
        (["1,234", "0.00"], True),  # two decimals: a lone mark is always the decimal one
        (["12,345", "0"], False),  # no decimals: "12,345" groups thousands
        (["1.234.567", "12.345"], False),
        (["12,345"], False),  # nothing else says: thousands, as before
        ([], False),
        (["", "abc"], False),
    ],
)
def test_an_answers_other_amounts_say_what_a_lone_mark_is(answer: list[str], decimal: bool) -> None:
    assert lone_mark_is_decimal(answer) is decimal


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("12.345", "12.345"),
        ("12,345", "12.345"),
        ("-1,234", "-1.234"),
        ("1,234.567", "1234.567"),
        ("(0.125)", "-0.125"),
    ],
)
def test_a_lone_mark_read_as_the_decimal_one(text: str, amount: str) -> None:
    assert parse_formatted_amount(text, lone_mark_is_decimal=True) == Decimal(amount)


@pytest.mark.parametrize("text", ["", "   ", "\u00a0"])
def test_blank_amounts_are_none(text: str) -> None:
    assert parse_formatted_amount(text) is None


@pytest.mark.parametrize("text", ["abc", "1e5", "NaN", "Infinity", "1.2.3,4,5", "--", ".", "$12", "1" * 41])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        parse_formatted_amount(text)


@pytest.mark.parametrize(
    ("current_start", "as_of", "start"),
    [
        ("2026-01-01", "2026-05-19", "2026-01-01"),
        ("2026-01-01", "2025-12-31", "2025-01-01"),
        ("2025-07-01", "2026-05-19", "2025-07-01"),
        ("2026-07-01", "2026-05-19", "2025-07-01"),
        ("2026-07-01", "2026-07-01", "2026-07-01"),
        ("2026-07-01", "2028-08-15", "2028-07-01"),
        ("2024-02-29", "2026-03-01", "2026-02-28"),
    ],
)
def test_without_accounting_periods_years_of_twelve_months_are_counted(
    current_start: str, as_of: str, start: str
) -> None:
    assert fiscal_year_start(
        dt.date.fromisoformat(as_of),
        last_opened=None,
        last_period=None,
        current_start=dt.date.fromisoformat(current_start),
    ) == dt.date.fromisoformat(start)


@pytest.mark.parametrize(
    ("last_opened", "last_period", "as_of", "start"),
    [
        # A year end moved from December to June: a short year from January to June 2024.
        ("2024-01-01", "2025-06-01", "2024-05-31", "2024-01-01"),
        ("2023-01-01", "2025-06-01", "2023-12-31", "2023-01-01"),
        ("2024-07-01", "2025-06-01", "2025-03-31", "2024-07-01"),
        # ...or to December 2025 from June: one long year of 18 months, July 2024 on.
        ("2024-07-01", "2025-12-01", "2025-09-30", "2024-07-01"),
        # 52/53-week retail years: a year opened on 4 February, and one of 53 weeks from
        # 29 January 2023 to 3 February 2024 (its last period set up on 31 December).
        ("2024-02-04", "2025-01-05", "2025-01-31", "2024-02-04"),
        ("2023-01-29", "2024-01-07", "2024-02-01", "2023-01-29"),
        # The year's first day itself.
        ("2025-07-01", "2026-06-01", "2025-07-01", "2025-07-01"),
        # Past the periods set up: twelve-month years on from the last one opened.
        ("2024-07-01", "2025-06-01", "2026-08-15", "2026-07-01"),
        ("2024-07-01", "2025-06-01", "2026-06-30", "2025-07-01"),
    ],
)
def test_the_fiscal_year_is_the_one_the_accounting_periods_opened(
    last_opened: str, last_period: str, as_of: str, start: str
) -> None:
    # companyInformation's current start (a year set up ahead) does not move it.
    assert fiscal_year_start(
        dt.date.fromisoformat(as_of),
        last_opened=dt.date.fromisoformat(last_opened),
        last_period=dt.date.fromisoformat(last_period),
        current_start=dt.date(2026, 7, 1),
    ) == dt.date.fromisoformat(start)


def test_bc_enum_values_are_decoded() -> None:
    assert decode_enum("Begin_x002D_Total") == "Begin-Total"
    assert decode_enum("In_x0020_Review") == "In Review"
    assert decode_enum("Posting") == "Posting"


def test_a_compressed_reply_reads_like_a_plain_one() -> None:
    result = commands.ClientCreated(client_id=uuid.UUID(int=1))
    compressed = commands.encode_result(result, compress=True)
    assert compressed.startswith(commands.GZIP_MAGIC)
    assert json.loads(gzip.decompress(compressed)) == json.loads(commands.encode_result(result))
    assert json.loads(commands.decompress_reply(compressed))["result"]["client_id"].endswith("1")


def test_a_reply_that_would_inflate_past_the_limit_or_is_cut_short_is_refused() -> None:
    bomb = gzip.compress(b" " * 10_001)
    assert len(commands.decompress_reply(bomb, limit=10_001)) == 10_001
    with pytest.raises(CommandRejected, match="too large"):
        commands.decompress_reply(bomb, limit=10_000)
    with pytest.raises(CommandRejected, match="incomplete"):
        commands.decompress_reply(gzip.compress(b"{}" * 100)[:-6])
    with pytest.raises(CommandRejected, match="unreadable"):
        commands.decompress_reply(commands.GZIP_MAGIC + b"garbage")
