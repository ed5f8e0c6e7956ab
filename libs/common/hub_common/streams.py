"""Subjects, both streams and every durable consumer, declared in one place.

Every subject carries the firm (``hub.<firm_id>.<entity>.<event>``) so that replaying one
firm is a subject filter and NATS permissions can fence a firm off.

``declare_topology`` is idempotent and reconciles: nats-py binds an existing durable
without updating it, so a changed consumer config would otherwise be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from hub_common.events import EVENT_TYPES, CompanySnapshot
from hub_common.logging import get_logger

logger = get_logger(__name__)

EVENTS_STREAM = "HUB_EVENTS"
SNAPSHOTS_STREAM = "HUB_SNAPSHOTS"
DEAD_LETTER_STREAM = "HUB_DEAD_LETTERS"
# Leased request slots per BC tenant, shared by every fetcher process (see hub_fetcher.bc.limits).
BC_SLOTS_BUCKET = "HUB_BC_SLOTS"
BC_SLOT_LEASE_SECONDS = 120.0
DEAD_LETTER_SUBJECT_PREFIX = "deadletter"
DUPLICATE_WINDOW_SECONDS = 120.0


def event_subject(firm_id: str, event_type: str) -> str:
    """The subject filter for one event type of one firm ('*' for every firm)."""
    template = EVENT_TYPES[event_type].subject_template
    return f"hub.{firm_id}.{template.format(company_id='*')}"


def _event_entities() -> list[str]:
    """The subject entities (``client``, ``refresh``...) of every audit-log event."""
    entities = {model.subject_template.split(".")[0] for model in EVENT_TYPES.values() if model is not CompanySnapshot}
    return sorted(entities)


@dataclass(frozen=True)
class StreamLimits:
    """Retention settings: the audit horizon and how many snapshots to keep."""

    audit_max_age_seconds: float = 0  # 0 keeps every event forever
    snapshots_per_company: int = 10
    snapshots_max_age_seconds: float = 90 * 24 * 3600


def stream_configs(limits: StreamLimits) -> list[StreamConfig]:
    events = StreamConfig(
        name=EVENTS_STREAM,
        description="Every domain event of the hub except snapshots: the audit log.",
        subjects=[f"hub.*.{entity}.>" for entity in _event_entities()],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=limits.audit_max_age_seconds,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.OLD,
    )
    snapshots = StreamConfig(
        name=SNAPSHOTS_STREAM,
        description="The latest CompanySnapshot events, one subject per company.",
        subjects=["hub.*.company.*.snapshot"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=limits.snapshots_per_company,
        max_age=limits.snapshots_max_age_seconds,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.OLD,
    )
    dead_letters = StreamConfig(
        name=DEAD_LETTER_STREAM,
        description="Messages no handler could take, kept for an operator to see and replay.",
        subjects=[f"{DEAD_LETTER_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        discard=DiscardPolicy.OLD,
    )
    return [events, snapshots, dead_letters]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer a role shares across all of its processes."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait_seconds: float
    max_deliver: int
    max_ack_pending: int = 1000

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subjects=list(self.filter_subjects),
        )


FETCHER_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="fetcher",
    filter_subjects=(
        event_subject("*", "ClientAdded"),
        event_subject("*", "RefreshRequested"),
        event_subject("*", "ConnectionTestRequested"),
    ),
    # A refresh reports progress while it works, so this only bounds a dead worker's hold.
    ack_wait_seconds=60,
    max_deliver=8,
)
GATEWAY_EVENTS_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="gateway-events",
    filter_subjects=("hub.>",),
    ack_wait_seconds=30,
    max_deliver=10,
)
GATEWAY_SNAPSHOTS_CONSUMER = ConsumerSpec(
    stream=SNAPSHOTS_STREAM,
    durable="gateway-snapshots",
    filter_subjects=("hub.>",),
    ack_wait_seconds=30,
    max_deliver=10,
)
REGISTRY_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="registry",
    filter_subjects=(event_subject("*", "InvitationAccepted"),),
    ack_wait_seconds=30,
    max_deliver=10,
)
INVITATIONS_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="invitations",
    filter_subjects=(event_subject("*", "ColleagueInvited"),),
    # Mail retries wait for the SMTP server; the last failure is dead-lettered for an operator.
    ack_wait_seconds=60,
    max_deliver=10,
)
CONSUMERS = (
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    REGISTRY_CONSUMER,
    INVITATIONS_CONSUMER,
)


def _differs(wanted: StreamConfig | ConsumerConfig, actual: StreamConfig | ConsumerConfig) -> bool:
    wanted_fields = {k: v for k, v in wanted.as_dict().items() if v is not None}
    actual_fields = actual.as_dict()
    return any(actual_fields.get(key) != value for key, value in wanted_fields.items())


async def declare_topology(js: JetStreamContext, limits: StreamLimits | None = None) -> None:
    """Create or reconcile both streams and every durable consumer."""
    for wanted in stream_configs(limits or StreamLimits()):
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(wanted)
            logger.info("stream created", stream=wanted.name)
            continue
        if _differs(wanted, info.config):
            await js.update_stream(wanted)
            logger.info("stream updated", stream=wanted.name)
    try:
        await js.key_value(BC_SLOTS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=BC_SLOTS_BUCKET,
                description="Who holds each of a BC tenant's concurrent request slots (leases).",
                history=1,
                ttl=BC_SLOT_LEASE_SECONDS,
                storage=StorageType.MEMORY,
            )
        )
        logger.info("bucket created", bucket=BC_SLOTS_BUCKET)
    for spec in CONSUMERS:
        wanted_consumer = spec.config()
        try:
            consumer = await js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(spec.stream, wanted_consumer)
            logger.info("consumer created", stream=spec.stream, consumer=spec.durable)
            continue
        if _differs(wanted_consumer, consumer.config):
            # The server treats a create for an existing name as an update of the mutable fields.
            await js.add_consumer(spec.stream, wanted_consumer)
            logger.info("consumer updated", stream=spec.stream, consumer=spec.durable)
