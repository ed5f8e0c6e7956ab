"""The envelope: typed data in, the same typed data out; anything else is refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from hub_common.events import (
    Actor,
    CashFigure,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientSource,
    CompanyFigures,
    CompanySnapshot,
    InvalidEvent,
    decode_event,
    new_envelope,
)


def _snapshot(total: Decimal) -> CompanySnapshot:
    now = datetime.now(UTC)
    return CompanySnapshot(
        client_id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        company_name="CRONUS UK Ltd.",
        refresh_id=uuid.uuid4(),
        currency_code="GBP",
        read_at=now,
        web_client_link="https://businesscentral.dynamics.com/t/Production?company=CRONUS",
        figures=CompanyFigures(cash=CashFigure(accounts=[], total=total, source="api", read_at=now)),
    )


def test_round_trip_keeps_type_and_exact_money() -> None:
    firm = uuid.uuid4()
    snapshot = _snapshot(Decimal("1234567890123.45"))
    envelope = new_envelope(snapshot, firm_id=firm, actor=Actor.service("fetcher"))
    raw = envelope.to_bytes()
    assert '"total":"1234567890123.45"' in raw.decode()
    decoded = decode_event(raw)
    assert isinstance(decoded.data, CompanySnapshot)
    assert decoded == envelope
    assert decoded.subject == f"hub.{firm}.company.{snapshot.company_id}.snapshot"


def test_caused_event_inherits_correlation() -> None:
    cause = new_envelope(_snapshot(Decimal(1)), firm_id=uuid.uuid4(), actor=Actor.service("x"))
    effect = new_envelope(_snapshot(Decimal(2)), firm_id=cause.firm_id, actor=Actor.service("y"), causation=cause)
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == str(cause.id)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(type="NoSuchEvent"),
        lambda e: e.update(version=99),
        lambda e: e["data"].update(unexpected="field"),
        lambda e: e["data"]["figures"]["cash"].update(total="NaN"),
        lambda e: e["data"]["figures"]["cash"].update(total="-Infinity"),
        lambda e: e["data"]["figures"]["cash"].update(total="1" + "0" * 28),
        lambda e: e["data"]["figures"]["cash"].update(total="1E+999999"),
        lambda e: e["data"]["figures"]["cash"].update(total="1E-999999"),
        lambda e: e["data"].update(company_id="not-a-uuid"),
        lambda e: e.pop("firm_id"),
        lambda e: e.update(correlation_id=""),
    ],
)
def test_invalid_envelopes_are_refused(mutate: object) -> None:
    envelope = new_envelope(_snapshot(Decimal(5)), firm_id=uuid.uuid4(), actor=Actor.service("f"))
    document = json.loads(envelope.to_bytes())
    mutate(document)  # type: ignore[operator]
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps(document))


def test_the_largest_amounts_are_accepted() -> None:
    envelope = new_envelope(_snapshot(Decimal(5)), firm_id=uuid.uuid4(), actor=Actor.service("f"))
    document = json.loads(envelope.to_bytes())
    for total in ("99999999999999999999999999.99", "-99999999999999999999999999.99", "0.01"):
        document["data"]["figures"]["cash"]["total"] = total
        decoded = decode_event(json.dumps(document))
        assert decoded.data.figures.cash.total == Decimal(total)  # type: ignore[attr-defined]


def test_garbage_is_refused() -> None:
    for raw in (b"", b"not json", b"[]", b"\xff\xfe"):
        with pytest.raises(InvalidEvent):
            decode_event(raw)


@pytest.mark.parametrize("tenant", ["../etc", "a/b", "contoso.com/x", "*", ">", "a b"])
def test_connection_refuses_tenants_that_could_escape_a_url_or_subject(tenant: str) -> None:
    with pytest.raises(ValidationError):
        ClientConnection(tenant=tenant, environment="Production")


def test_client_added_subject_carries_firm() -> None:
    firm = uuid.uuid4()
    data = ClientAdded(
        client_id=uuid.uuid4(),
        card=ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.com"),
        connection=ClientConnection(tenant="contoso.com", environment="Production"),
        source=ClientSource.MANUAL,
    )
    envelope = new_envelope(data, firm_id=firm, actor=Actor.service("registry"))
    assert envelope.subject == f"hub.{firm}.client.added"
