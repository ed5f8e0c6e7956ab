"""`hub audit` and `hub dead-letters`: the event log, as a table or as JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from hub_common.bus import connect
from hub_common.events import Envelope, EventData
from hub_common.history import DeadLetter, HistoryFilter, read_dead_letters, read_history
from hub_common.logging import configure_logging
from hub_common.settings import HubSettings

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO date or time (UTC unless it says otherwise), or a duration back from now: 90m, 2d."""
    moment = _DURATION.match(text.strip())
    if moment:
        amount, unit = int(moment.group(1)), moment.group(2)
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
        except OverflowError as error:
            raise ValueError(f"{text!r} reaches back before the year 1: give a shorter duration or a date") from error
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ValueError(f"{text!r} is neither an ISO date/time nor a duration such as 90m or 2d") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def describe(envelope: Envelope[EventData]) -> str:
    """One line about what happened, in the words of the event's own fields."""
    data: Any = envelope.data
    if hasattr(data, "card"):
        return f"client {data.card.name!r} ({data.client_id})"
    if hasattr(data, "failure") and data.failure is not None:
        return f"{data.failure.kind.value}: {data.failure.summary}"
    for field_name in ("client_name", "email", "name"):
        value = getattr(data, field_name, None)
        if isinstance(value, str):
            return value
    for field_name in ("client_id", "invitation_id", "test_id"):
        value = getattr(data, field_name, None)
        if value is not None:
            return f"{field_name} {value}"
    return ""


def _actor(envelope: Envelope[EventData]) -> str:
    actor = envelope.actor
    return f"{actor.kind.value}:{actor.display_name or actor.id}"


def quiet_logging() -> None:
    """Tool output goes to stdout; the library's own log lines stay on stderr, warnings only."""
    configure_logging(HubSettings(log_level="WARNING", service_name="hub-cli"))


@dataclass
class Listed:
    """What a listing met so far (kept when it is interrupted)."""

    unreadable: int = 0


async def print_history(
    nats_url: str,
    wanted: HistoryFilter,
    *,
    as_json: bool,
    follow: bool,
    out: TextIO | None = None,
    listed: Listed | None = None,
) -> Listed:
    """Prints the listing; counts in ``listed`` the messages this release could not read,
    each of them listed in its place as unreadable."""
    out = out or sys.stdout
    listed = listed if listed is not None else Listed()
    connection = await connect(nats_url, name="hub-audit")

    def print_unreadable(sequence: int, subject: str, error: str) -> None:
        listed.unreadable += 1
        if as_json:
            record = {"stream_sequence": sequence, "unreadable": True, "subject": subject, "error": error}
            print(json.dumps(record, sort_keys=True), file=out, flush=follow)
        else:
            line = f"{sequence:>7}  {'(unreadable)':19}  {subject}  {error.splitlines()[0][:160]}"
            print(line, file=out, flush=follow)

    try:
        if not as_json:
            print(f"{'seq':>7}  {'when (UTC)':19}  {'firm':8}  {'event':24}  {'actor':34}  what", file=out)
        async for sequence, envelope in read_history(
            connection.jetstream(), wanted, follow=follow, on_unreadable=print_unreadable
        ):
            if as_json:
                record = json.loads(envelope.model_dump_json())
                record["stream_sequence"] = sequence
                print(json.dumps(record, sort_keys=True), file=out, flush=follow)
            else:
                print(
                    f"{sequence:>7}  {envelope.occurred_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  "
                    f"{str(envelope.firm_id)[:8]}  {envelope.type:24}  {_actor(envelope)[:34]:34}  "
                    f"{describe(envelope)}",
                    file=out,
                    flush=follow,
                )
    finally:
        await connection.close()
    return listed


async def print_dead_letters(
    nats_url: str, *, as_json: bool, firm_id: uuid.UUID | None = None, out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    connection = await connect(nats_url, name="hub-dead-letters")
    count = 0
    try:
        async for record in read_dead_letters(connection.jetstream(), firm_id=firm_id):
            count += 1
            if as_json:
                print(json.dumps(record, sort_keys=True), file=out)
            else:
                letter = DeadLetter.model_validate(record)
                print(
                    f"{letter.dead_letter_sequence:>6}  {letter.dead_lettered_at.isoformat()[:19]}  "
                    f"{letter.consumer:18}  {letter.stream}#{letter.stream_sequence}  {letter.subject}  "
                    f"{letter.error[:80]}",
                    file=out,
                )
    finally:
        await connection.close()
    if not as_json:
        print(f"{count} dead-lettered message(s)", file=out)
    return count


def run_audit(
    nats_url: str,
    *,
    firm: str | None,
    client: str | None,
    accountant: str | None,
    types: list[str],
    since: str | None,
    until: str | None,
    as_json: bool,
    follow: bool,
) -> int:
    quiet_logging()
    wanted = HistoryFilter(
        firm_id=uuid.UUID(firm) if firm else None,
        client_id=uuid.UUID(client) if client else None,
        accountant_id=accountant,
        event_types=frozenset(types),
        since=parse_moment(since) if since else None,
        until=parse_moment(until) if until else None,
    )
    listed = Listed()
    # A --follow stopped with Ctrl-C: what it met still counts.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(print_history(nats_url, wanted, as_json=as_json, follow=follow, listed=listed))
    return listed.unreadable
