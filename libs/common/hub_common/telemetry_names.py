"""FastStream's spans and message metrics named after a subject's pattern, not the subject.

FastStream names a consumer's span and labels its message counters with the subject a
message came on. The hub's subjects carry ids (``hub.<firm id>.company.<company id>.snapshot``),
so every firm and company would get span names and metric series of their own: unbounded
cardinality in a tracing backend, and firm ids where operators' dashboards group by name.
Each id is named ``*`` instead (``hub.*.company.*.snapshot``); the subject itself stays in
the span's attributes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from faststream.message import StreamMessage
from faststream.nats.opentelemetry.provider import (
    NatsBatchTelemetrySettingsProvider,
    NatsTelemetrySettingsProvider,
    telemetry_attributes_provider_factory,
)
from faststream.nats.response import NatsPublishCommand
from nats.aio.msg import Msg
from typing_extensions import override

_ID = re.compile(r"(?<![^.])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![^.])")


def subject_pattern(subject: str) -> str:
    """The subject with every id token named ``*``."""
    return _ID.sub("*", subject)


class _MessageNames(NatsTelemetrySettingsProvider):
    @override
    def get_consume_destination_name(self, msg: StreamMessage[Msg]) -> str:
        return subject_pattern(super().get_consume_destination_name(msg))

    @override
    def get_publish_destination_name(self, cmd: NatsPublishCommand) -> str:  # type: ignore[override]
        return subject_pattern(super().get_publish_destination_name(cmd))


class _BatchNames(NatsBatchTelemetrySettingsProvider):
    @override
    def get_consume_destination_name(self, msg: StreamMessage[list[Msg]]) -> str:
        return subject_pattern(super().get_consume_destination_name(msg))

    @override
    def get_publish_destination_name(self, cmd: NatsPublishCommand) -> str:  # type: ignore[override]
        return subject_pattern(super().get_publish_destination_name(cmd))


def telemetry_settings_for(
    msg: Msg | Sequence[Msg] | None,
) -> NatsTelemetrySettingsProvider | NatsBatchTelemetrySettingsProvider | None:
    """FastStream's own choice of settings for a message (none for key-value and object
    store watches), with subject patterns for names."""
    chosen = telemetry_attributes_provider_factory(msg)
    if isinstance(chosen, NatsBatchTelemetrySettingsProvider):
        return _BatchNames()
    return _MessageNames() if isinstance(chosen, NatsTelemetrySettingsProvider) else chosen
