"""Subjects, both streams and every durable consumer, declared in one place.

Every subject carries the firm (``hub.<firm_id>.<entity>.<event>``) so that replaying one
firm is a subject filter and NATS permissions can fence a firm off.

The registry owns the topology: at start-up ``declare_topology`` creates and reconciles
every stream, bucket and durable consumer (nats-py binds an existing durable without
updating it, so a changed consumer config would otherwise be silently ignored). Every other
service only waits for it (``await_topology``): its NATS user may create nothing.

Retention (``StreamLimits``) and delivery (``DeliveryLimits``) come from settings, which
every process must be given alike: a service whose delivery settings differ from the
registry's waits until the registry declares its consumer as they say.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields, replace

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

from hub_common.bus import BROKER_UNAVAILABLE
from hub_common.events import EVENT_TYPES, CompanySnapshot
from hub_common.grants import GRANTS_BUCKET, GRANTS_BUCKET_DESCRIPTION
from hub_common.logging import get_logger
from hub_common.settings import STREAM_DUPLICATE_WINDOW_SECONDS, HubSettings

logger = get_logger(__name__)

EVENTS_STREAM = "HUB_EVENTS"
SNAPSHOTS_STREAM = "HUB_SNAPSHOTS"
DEAD_LETTER_STREAM = "HUB_DEAD_LETTERS"
# Leased request slots per BC tenant, shared by every fetcher process (see hub_fetcher.bc.limits).
BC_SLOTS_BUCKET = "HUB_BC_SLOTS"
BC_SLOT_LEASE_SECONDS = 15.0
# When BC asked a tenant's identity to wait (a Retry-After), for every fetcher process; a
# wait longer than an entry lives is the retry's business, not every read's.
BC_HOLD_OFFS_BUCKET = "HUB_BC_HOLD_OFFS"
BC_HOLD_OFF_MAX_SECONDS = 120.0
# How many requests every fetcher process together sent each BC tenant in each slice of
# its request window (hub_fetcher.bc.limits.SharedRequestWindow); a slice's count is
# needed only while it lasts (30 s).
BC_WINDOWS_BUCKET = "HUB_BC_WINDOWS"
BC_WINDOW_COUNT_SECONDS = 60.0
# Which replica of a role holds its lease (hub_common.leadership).
LEASES_BUCKET = "HUB_LEASES"
LEADER_LEASE_SECONDS = 10.0
# The BC webhook state each company was last recorded in (hub_fetcher.notifications): the
# fetchers keep nothing else between refreshes, so a refresh that finds the subscriptions
# as they should be records that only when it differs from what was recorded. An entry
# lives a day, so every state is recorded again at least daily.
NOTIFICATION_STATES_BUCKET = "HUB_NOTIFICATION_STATES"
NOTIFICATION_STATE_SECONDS = 24 * 3600.0
# Which companies of a deferred refresh already have their outcome (hub_fetcher.refresh_progress):
# a redelivery reads only the others. A day outlives any refresh's retries (at most
# HUB_FETCHER_MAX_DELIVER delays of at most 5 minutes each).
REFRESH_PROGRESS_BUCKET = "HUB_REFRESH_PROGRESS"
REFRESH_PROGRESS_SECONDS = 24 * 3600.0
DEAD_LETTER_SUBJECT_PREFIX = "deadletter"
# The streams whose loss or change could lose the audit log or the grants: nobody but an
# operator deletes or purges them (hub_common.nats_permissions).
RECORD_STREAMS = (EVENTS_STREAM, SNAPSHOTS_STREAM, DEAD_LETTER_STREAM, f"KV_{GRANTS_BUCKET}")


def event_subject(firm_id: str, event_type: str) -> str:
    """The subject filter for one event type of one firm ('*' for every firm)."""
    template = EVENT_TYPES[event_type].subject_template
    return f"hub.{firm_id}.{template.format(company_id='*')}"


def _event_entities() -> list[str]:
    """The subject entities (``client``, ``refresh``...) of every audit-log event."""
    entities = {model.subject_template.split(".")[0] for model in EVENT_TYPES.values() if model is not CompanySnapshot}
    return sorted(entities)


def firm_of_subject(subject: str) -> uuid.UUID | None:
    """The firm a hub subject belongs to (``hub.<firm_id>.…``), or None if it names none."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "hub":
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


UNATTRIBUTED = "unattributed"


def dead_letter_subject(durable: str, original_subject: str) -> str:
    """``deadletter.<durable>.<firm_id>``: one firm's dead letters are a subject filter away.

    A message whose subject names no firm goes under ``unattributed``; only operators
    (``hub dead-letters``) see those, since nothing says which firm may.
    """
    firm_id = firm_of_subject(original_subject)
    return f"{DEAD_LETTER_SUBJECT_PREFIX}.{durable}.{firm_id or UNATTRIBUTED}"


def dead_letter_filter(firm_id: uuid.UUID | None = None) -> str:
    """Every dead letter, or one firm's (of every consumer)."""
    return f"{DEAD_LETTER_SUBJECT_PREFIX}.*.{firm_id}" if firm_id else f"{DEAD_LETTER_SUBJECT_PREFIX}.>"


@dataclass(frozen=True)
class StreamLimits:
    """Retention settings: the audit horizon and how many snapshots to keep."""

    audit_max_age_seconds: float = 0  # 0 keeps every event forever
    snapshots_per_company: int = 10
    snapshots_max_age_seconds: float = 90 * 24 * 3600
    # Bounded per consumer and firm, so no firm's failures fill the broker's disk nor make
    # another firm's Check Errors slow, which reads a firm's dead letters one get at a time.
    dead_letters_per_firm: int = 1000
    dead_letters_max_age_seconds: float = 90 * 24 * 3600
    # How long a BC request slot stays taken if its holder dies without giving it back.
    bc_slot_lease_seconds: float = BC_SLOT_LEASE_SECONDS
    # Copies of every stream and bucket in a NATS cluster; consumers follow their stream's.
    stream_replicas: int = 1
    leader_lease_seconds: float = LEADER_LEASE_SECONDS

    @classmethod
    def from_settings(cls, settings: HubSettings) -> StreamLimits:
        # Each field is the setting of the same name (HUB_AUDIT_MAX_AGE_SECONDS ...).
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)})


def stream_configs(limits: StreamLimits) -> list[StreamConfig]:
    events = StreamConfig(
        name=EVENTS_STREAM,
        description="Every domain event of the hub except snapshots: the audit log.",
        subjects=[f"hub.*.{entity}.>" for entity in _event_entities()],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=limits.audit_max_age_seconds,
        duplicate_window=STREAM_DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.OLD,
        num_replicas=limits.stream_replicas,
    )
    snapshots = StreamConfig(
        name=SNAPSHOTS_STREAM,
        description="The latest CompanySnapshot events, one subject per company.",
        subjects=["hub.*.company.*.snapshot"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=limits.snapshots_per_company,
        max_age=limits.snapshots_max_age_seconds,
        duplicate_window=STREAM_DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.OLD,
        num_replicas=limits.stream_replicas,
    )
    dead_letters = StreamConfig(
        name=DEAD_LETTER_STREAM,
        description="Messages no handler could take, kept for an operator to see and replay.",
        subjects=[f"{DEAD_LETTER_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=limits.dead_letters_per_firm,
        max_age=limits.dead_letters_max_age_seconds,
        duplicate_window=STREAM_DUPLICATE_WINDOW_SECONDS,
        discard=DiscardPolicy.OLD,
        num_replicas=limits.stream_replicas,
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
    # A failed message is redelivered after retry_delay_seconds, doubling per delivery up to
    # retry_max_delay_seconds. Those delays count toward max_deliver: together they are how
    # long a failure may last before the message is dead-lettered.
    retry_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    # Where a durable created anew starts. Only the read model's read the stream from its
    # first event: the model is built from the whole history, and applying an event twice
    # changes nothing. A role that acts on what it reads (reads BC, sends mail, adds clients,
    # revokes access) starts at its creation: re-created after a deletion or a restore, or
    # added by an upgrade, it would otherwise do again everything the audit log holds.
    replays_history: bool = False

    def retry_delay(self, num_delivered: int) -> float:
        """Seconds before the next delivery after the ``num_delivered``-th failed."""
        doubled: float = self.retry_delay_seconds * 2.0 ** max(0, num_delivered - 1)
        return min(self.retry_max_delay_seconds, doubled)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL if self.replays_history else DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            # One delivery more than the handlers use: a message whose last delivery ended
            # without an outcome (its worker stopped, crashed or ran past the ack wait, or its
            # dead letter could not be written) comes back once more, only to be dead-lettered
            # (hub_common.consumers). With the server's limit at max_deliver, it would never
            # come back, and nothing would say so.
            max_deliver=self.max_deliver + 1,
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
    replays_history=True,
)
GATEWAY_SNAPSHOTS_CONSUMER = ConsumerSpec(
    stream=SNAPSHOTS_STREAM,
    durable="gateway-snapshots",
    filter_subjects=("hub.>",),
    ack_wait_seconds=30,
    max_deliver=10,
    replays_history=True,
)
REGISTRY_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="registry",
    filter_subjects=(
        event_subject("*", "InvitationAccepted"),
        event_subject("*", "RefreshFailed"),
        event_subject("*", "CompaniesDiscovered"),
    ),
    ack_wait_seconds=30,
    max_deliver=10,
)
# The registry watches every company's figures for the firms' alert rules.
REGISTRY_SNAPSHOTS_CONSUMER = ConsumerSpec(
    stream=SNAPSHOTS_STREAM,
    durable="registry-snapshots",
    filter_subjects=("hub.>",),
    ack_wait_seconds=30,
    max_deliver=10,
)
INVITATIONS_CONSUMER = ConsumerSpec(
    stream=EVENTS_STREAM,
    durable="invitations",
    filter_subjects=(
        event_subject("*", "ColleagueInvited"),
        event_subject("*", "AlertRaised"),
        event_subject("*", "AlertDigestDue"),
        # Mail kept through an SMTP outage that must no longer go (hub_invitations.event_mail).
        event_subject("*", "AccountantRemoved"),
        event_subject("*", "ColleagueInvitationWithdrawn"),
    ),
    # A mail SMTP does not take is kept and retried by the mail loop, the event acknowledged;
    # one the server refuses for good is dead-lettered for an operator at once.
    ack_wait_seconds=60,
    max_deliver=10,
)
CONSUMERS = (
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    REGISTRY_CONSUMER,
    REGISTRY_SNAPSHOTS_CONSUMER,
    INVITATIONS_CONSUMER,
)
# The read model's consumers: what "projection" settings tune.
PROJECTION_CONSUMERS = frozenset({GATEWAY_EVENTS_CONSUMER.durable, GATEWAY_SNAPSHOTS_CONSUMER.durable})


@dataclass(frozen=True)
class DeliveryLimits:
    """How long a consumer may hold a message, how often it is delivered, how retries wait.

    The defaults suit production; the fault tests shorten them so a dead worker's message
    moves on within seconds.
    """

    # A fetcher reports progress while it works, so this only bounds a dead worker's hold.
    fetcher_ack_wait_seconds: float = FETCHER_CONSUMER.ack_wait_seconds
    fetcher_max_deliver: int = FETCHER_CONSUMER.max_deliver
    projection_ack_wait_seconds: float = GATEWAY_EVENTS_CONSUMER.ack_wait_seconds
    projection_max_deliver: int = GATEWAY_EVENTS_CONSUMER.max_deliver
    retry_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: HubSettings) -> DeliveryLimits:
        # Each field is the setting of the same name (HUB_FETCHER_ACK_WAIT_SECONDS ...).
        return cls(**{item.name: getattr(settings, item.name) for item in fields(cls)})

    def apply(self, spec: ConsumerSpec) -> ConsumerSpec:
        """The role's consumer with these limits."""
        tuned = replace(
            spec, retry_delay_seconds=self.retry_delay_seconds, retry_max_delay_seconds=self.retry_max_delay_seconds
        )
        if spec.durable == FETCHER_CONSUMER.durable:
            return replace(tuned, ack_wait_seconds=self.fetcher_ack_wait_seconds, max_deliver=self.fetcher_max_deliver)
        if spec.durable in PROJECTION_CONSUMERS:
            return replace(
                tuned, ack_wait_seconds=self.projection_ack_wait_seconds, max_deliver=self.projection_max_deliver
            )
        return tuned


@dataclass(frozen=True)
class Topology:
    """Everything ``declare_topology`` reconciles that settings may change."""

    streams: StreamLimits = StreamLimits()
    delivery: DeliveryLimits = DeliveryLimits()

    @staticmethod
    def setting_names() -> list[str]:
        """The environment variables every process must be given alike (``HUB_…``)."""
        return [f"HUB_{item.name.upper()}" for limits in (StreamLimits, DeliveryLimits) for item in fields(limits)]

    @classmethod
    def from_settings(cls, settings: HubSettings) -> Topology:
        return cls(streams=StreamLimits.from_settings(settings), delivery=DeliveryLimits.from_settings(settings))

    def consumer(self, spec: ConsumerSpec) -> ConsumerSpec:
        """The spec a service subscribes with: the same one ``declare_topology`` declared."""
        return self.delivery.apply(spec)


@dataclass(frozen=True)
class Bucket:
    """A KV bucket the topology keeps: a stream underneath, reconciled like the others."""

    name: str
    description: str
    # Seconds an entry lives without being written again (0: forever): the lease buckets.
    ttl_seconds: float = 0
    # A bucket of leases only: losing its entries costs a moment of extra concurrency, so it
    # may be dropped and created anew when its storage must change. Never true for records.
    replaceable: bool = False

    def config(self, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            history=1,
            ttl=self.ttl_seconds or None,
            # Every bucket is on file: leases and grants must outlive a broker restart, or
            # every fetcher fails to take a slot (and to see a grant) until it restarts.
            storage=StorageType.FILE,
            replicas=replicas,
        )


def buckets(limits: StreamLimits) -> list[Bucket]:
    return [
        Bucket(
            name=BC_SLOTS_BUCKET,
            description="Who holds each of a BC tenant's concurrent request slots (leases).",
            ttl_seconds=limits.bc_slot_lease_seconds,
            replaceable=True,
        ),
        Bucket(
            name=BC_HOLD_OFFS_BUCKET,
            description="Until when BC asked each tenant's identity to wait (its Retry-After).",
            ttl_seconds=BC_HOLD_OFF_MAX_SECONDS,
            replaceable=True,
        ),
        Bucket(
            name=BC_WINDOWS_BUCKET,
            description="How many requests the fetchers sent each BC tenant in each 30 s slice of its window.",
            ttl_seconds=BC_WINDOW_COUNT_SECONDS,
            replaceable=True,
        ),
        Bucket(name=GRANTS_BUCKET, description=GRANTS_BUCKET_DESCRIPTION),
        Bucket(
            name=REFRESH_PROGRESS_BUCKET,
            description="Which companies of a deferred refresh already have their outcome (a cache of the fetchers).",
            ttl_seconds=REFRESH_PROGRESS_SECONDS,
            replaceable=True,
        ),
        Bucket(
            name=NOTIFICATION_STATES_BUCKET,
            description="The BC webhook state last recorded for each company (a cache of the fetchers).",
            ttl_seconds=NOTIFICATION_STATE_SECONDS,
        ),
        Bucket(
            name=LEASES_BUCKET,
            description="Which replica of a role holds its lease (outbox relay, schedules).",
            ttl_seconds=limits.leader_lease_seconds,
            replaceable=True,
        ),
    ]


def _bucket_differs(bucket: Bucket, config: StreamConfig, replicas: int) -> bool:
    """Whether a bucket's stream keeps its entries otherwise than ``bucket`` says."""
    if config.storage != StorageType.FILE and bucket.replaceable:
        return True
    return (config.max_age or None) != (bucket.ttl_seconds or None) or (config.num_replicas or 1) != replicas


async def _declare_bucket(js: JetStreamContext, bucket: Bucket, replicas: int) -> None:
    wanted = bucket.config(replicas)
    try:
        status = await (await js.key_value(bucket.name)).status()
    except nats.js.errors.BucketNotFoundError:
        pass
    else:
        config = status.stream_info.config
        if not _bucket_differs(bucket, config, replicas):
            return
        if config.storage == StorageType.FILE or not bucket.replaceable:
            # A bucket is a stream underneath: its TTL is the stream's max_age. As when a
            # bucket is created, the duplicate window may not exceed the max age.
            ttl = bucket.ttl_seconds or None
            config.max_age = ttl
            config.duplicate_window = min(ttl or STREAM_DUPLICATE_WINDOW_SECONDS, STREAM_DUPLICATE_WINDOW_SECONDS)
            config.num_replicas = replicas
            await js.update_stream(config)
            logger.info("bucket updated", bucket=bucket.name, ttl_seconds=ttl, replicas=replicas)
            return
        # Storage cannot be changed in place. Dropping the leases lets at most one more round
        # of requests through at once, and only while the bucket is replaced.
        await js.delete_key_value(bucket.name)
        logger.warning("bucket replaced to keep it on file", bucket=bucket.name)
    with contextlib.suppress(nats.js.errors.BadRequestError):  # another process just created it
        await js.create_key_value(wanted)
        logger.info("bucket created", bucket=bucket.name, replicas=replicas)


def _differs(wanted: StreamConfig, actual: StreamConfig) -> bool:
    wanted_fields = {k: v for k, v in wanted.as_dict().items() if v is not None}
    actual_fields = actual.as_dict()
    return any(actual_fields.get(key) != value for key, value in wanted_fields.items())


# How long the registry, starting, waits for the broker to take its topology: a NATS cluster
# that is starting, or creating replicated streams, may time out a request for a while.
# Longer than that, the registry fails and is restarted.
TOPOLOGY_PATIENCE_SECONDS = 120.0
# How often a service waiting for the registry's topology looks again, and says so.
TOPOLOGY_POLL_SECONDS = 1.0
TOPOLOGY_WAIT_NOTICE_SECONDS = 30.0


async def declare_topology(
    js: JetStreamContext,
    topology: Topology | None = None,
    *,
    patience_seconds: float = TOPOLOGY_PATIENCE_SECONDS,
) -> None:
    """Create or reconcile both streams, every bucket and every durable consumer: the
    registry's duty at start-up (and the tests', as the operator).

    Each step is idempotent, so a broker that does not answer in time (an election, streams
    being placed across the cluster) gets the whole declaration again after a pause.
    """
    deadline = time.monotonic() + patience_seconds
    pause = 0.5
    while True:
        try:
            await _declare(js, topology or Topology())
            return
        except BROKER_UNAVAILABLE as error:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("broker not ready for the topology; declaring again", error=repr(error)[:200])
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


async def _declare(js: JetStreamContext, topology: Topology) -> None:
    for wanted in stream_configs(topology.streams):
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
    for bucket in buckets(topology.streams):
        await _declare_bucket(js, bucket, topology.streams.stream_replicas)
    for spec in map(topology.consumer, CONSUMERS):
        wanted_consumer = spec.config()
        try:
            consumer = await js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            if (await js.stream_info(spec.stream)).state.messages == 0:
                # On an empty stream both start at the same place; "all" is what registries
                # of earlier releases declare, so going back to one keeps working.
                wanted_consumer.deliver_policy = DeliverPolicy.ALL
            await js.add_consumer(spec.stream, wanted_consumer)
            logger.info(
                "consumer created",
                stream=spec.stream,
                consumer=spec.durable,
                deliver_policy=str(wanted_consumer.deliver_policy),
            )
            continue
        differences = _consumer_differences(spec, consumer.config)
        # The server treats a create for an existing name as an update of the mutable fields;
        # where a durable starts is not one of them, so it keeps its own.
        wanted_consumer.deliver_policy = consumer.config.deliver_policy
        wanted_consumer.opt_start_seq = consumer.config.opt_start_seq
        wanted_consumer.opt_start_time = consumer.config.opt_start_time
        if _starts_too_late(spec, consumer.config):
            logger.error(
                "consumer does not read the stream from its first event, and cannot be changed to; "
                "delete it for the registry to create it again",
                stream=spec.stream,
                consumer=spec.durable,
                deliver_policy=str(consumer.config.deliver_policy),
            )
        if differences:
            await js.add_consumer(spec.stream, wanted_consumer)
            logger.info("consumer updated", stream=spec.stream, consumer=spec.durable, differences=differences)


class StoppedWaitingForTopology(RuntimeError):
    """The service was asked to stop while it waited for the registry's topology."""


async def await_topology(
    js: JetStreamContext,
    topology: Topology,
    *,
    consumers: Collection[str],
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Wait until the registry has declared what this service needs: both streams, every
    bucket, and the service's own durable ``consumers`` exactly as its settings describe them.

    Every service but the registry starts so. Only the registry creates or changes the
    topology, and the others' NATS users may not (hub_common.nats_permissions): a consumer's
    create is also its update, so a service that could create its own durable could widen
    its filter and read every event of the stream. A service never pulls a durable other
    than its settings say (other filters, ack wait or deliveries): it would hand it events it
    does not handle, or dead-letter too early or never. It waits, saying what differs, until
    the registry (given the same settings) has declared it. A stream or bucket whose
    retention differs is used as it is, with a warning: the registry's settings apply.

    ``stopping`` says whether the process was asked to stop meanwhile (its signal handler
    cannot cancel a start-up that waits): then ``StoppedWaitingForTopology`` is raised.
    """
    pause = 0.05
    said_at: float | None = None
    warned: set[str] = set()
    while True:
        if stopping():
            raise StoppedWaitingForTopology("asked to stop while waiting for the registry to declare the topology")
        try:
            waiting_for = await _not_declared(js, topology, consumers, warned)
        except BROKER_UNAVAILABLE as error:
            waiting_for = [f"the broker to answer ({error!r:.200})"]
        if not waiting_for:
            return
        if said_at is None or time.monotonic() - said_at >= TOPOLOGY_WAIT_NOTICE_SECONDS:
            logger.warning("waiting for the registry to declare the topology", waiting_for=waiting_for)
            said_at = time.monotonic()
        await asyncio.sleep(pause)
        pause = min(pause * 2, TOPOLOGY_POLL_SECONDS)


async def _not_declared(
    js: JetStreamContext, topology: Topology, consumers: Collection[str], warned: set[str]
) -> list[str]:
    """What of the topology a service needs is missing or not as its settings say."""
    waiting_for: list[str] = []
    for wanted in stream_configs(topology.streams):
        try:
            info = await js.stream_info(str(wanted.name))
        except nats.js.errors.NotFoundError:
            waiting_for.append(f"stream {wanted.name}")
            continue
        if _differs(wanted, info.config):
            _warn_once(warned, f"stream {wanted.name}")
    for bucket in buckets(topology.streams):
        try:
            info = await js.stream_info(f"KV_{bucket.name}")
        except nats.js.errors.NotFoundError:
            waiting_for.append(f"bucket {bucket.name}")
            continue
        if _bucket_differs(bucket, info.config, topology.streams.stream_replicas):
            _warn_once(warned, f"bucket {bucket.name}")
    for spec in map(topology.consumer, CONSUMERS):
        if spec.durable not in consumers:
            continue
        try:
            consumer = await js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            waiting_for.append(f"consumer {spec.durable}")
            continue
        differences = _consumer_differences(spec, consumer.config, waiting=True)
        if _starts_too_late(spec, consumer.config):
            differences.append(f"deliver_policy {spec.config().deliver_policy}, not {consumer.config.deliver_policy}")
        if differences:
            waiting_for.append(f"consumer {spec.durable} as this process's settings say ({'; '.join(differences)})")
    return waiting_for


def _consumer_differences(spec: ConsumerSpec, actual: ConsumerConfig, *, waiting: bool = False) -> list[str]:
    """How a durable on the server differs from ``spec``. ``waiting``: as a service waiting
    for the registry sees it, which also takes a durable that keeps the handlers' own
    delivery limit (as releases before 2026-12-07 declared it, without the one delivery
    more that dead-letters a message whose last ended without an outcome): the handlers
    work the same, and the registry, upgraded last, declares the extra one."""
    wanted = spec.config()
    if waiting and actual.max_deliver == spec.max_deliver:
        wanted.max_deliver = actual.max_deliver
    actual_filters = sorted(actual.filter_subjects or ([actual.filter_subject] if actual.filter_subject else []))
    differences = []
    if sorted(spec.filter_subjects) != actual_filters:
        differences.append(f"filters {sorted(spec.filter_subjects)}, not {actual_filters}")
    # nats-py sends seconds as whole nanoseconds, cut (4.1 s is 4099999999 ns), and reads
    # them back divided: compared as the server keeps them.
    sent = None if wanted.ack_wait is None else int(wanted.ack_wait * 1e9)
    kept = None if actual.ack_wait is None else round(actual.ack_wait * 1e9)
    if sent != kept:
        differences.append(f"ack_wait {wanted.ack_wait}, not {actual.ack_wait}")
    for name in ("max_deliver", "max_ack_pending", "ack_policy"):
        if getattr(wanted, name) != getattr(actual, name):
            differences.append(f"{name} {getattr(wanted, name)}, not {getattr(actual, name)}")
    return differences


def _starts_too_late(spec: ConsumerSpec, actual: ConsumerConfig) -> bool:
    """Whether a read model's durable would miss history. Where any other durable started
    does not matter once it exists (those of earlier releases started at the first event)."""
    return spec.replays_history and actual.deliver_policy not in (None, DeliverPolicy.ALL)


def _warn_once(warned: set[str], what: str) -> None:
    if what not in warned:
        warned.add(what)
        logger.warning("differs from this process's settings; the registry's apply", what=what)
