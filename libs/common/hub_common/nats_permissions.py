"""What each service may publish and subscribe to on NATS: one user per service.

A service signed in as its own user can publish only its own events, the commands it sends
and its own buckets' entries, and can read only its own replies: the fetcher, which parses
every client tenant's answers, cannot publish a registry command or a ``ClientAdded``, nor
read the replies the gateway's requests get. The registry owns the topology: it alone
creates or changes a stream, a bucket or a consumer (the others wait for it,
``streams.await_topology``); nobody but an operator deletes or purges the audit log's
streams.

Replies travel on each service's own inbox prefix (``_INBOX.<service>``, ``inbox_prefix``),
so a user's subscribe permission names its own inboxes only. JetStream's API is allowed
per stream and consumer: a service sees, pulls and acknowledges only its own durables, and
creates no consumer at all (a consumer's create is also its update, so a service could
widen its durable's filter; and nats-server does not check a consumer's deliver subject
against its creator's permissions). Consumers check that an event arrived on its own
type's subject (``decode_event``), which is what ties an event's type to its publisher.

What is not fenced: a service may publish its own events for any firm; and the reply
subject of a JetStream API request is not checked either, so a service may have an answer
(a stream's info, a message wrapped in the API's JSON) stored under another subject, such
as a grant's key, where it reads as no grant (deploy/README.md "What is fenced").

``authorization_users`` renders the users for nats-server's ``authorization`` block;
``deploy/nats/authorization.conf`` and the chart's values are generated from it and a test
keeps them equal (``hub nats-permissions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub_common.bus import inbox_prefix
from hub_common.events import EVENT_TYPES
from hub_common.grants import GRANTS_BUCKET
from hub_common.streams import (
    BC_HOLD_OFFS_BUCKET,
    BC_SLOTS_BUCKET,
    BC_WINDOWS_BUCKET,
    CONSUMERS,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_PREFIX,
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    INVITATIONS_CONSUMER,
    LEASES_BUCKET,
    NOTIFICATION_STATES_BUCKET,
    REFRESH_PROGRESS_BUCKET,
    REGISTRY_CONSUMER,
    REGISTRY_SNAPSHOTS_CONSUMER,
    SNAPSHOTS_STREAM,
    ConsumerSpec,
    StreamLimits,
    buckets,
)

REGISTRY = "registry"
FETCHER = "fetcher"
INVITATIONS = "invitations"
GATEWAY = "gateway"
SERVICES = (REGISTRY, FETCHER, INVITATIONS, GATEWAY)
# The `hub` tools (audit, dead-letters, rebuild) and nats-box: everything, as before.
OPERATOR = "operator"
# Every user nats-server is given: one per service, and the operator.
USERS = (*SERVICES, OPERATOR)

# Which service publishes each event. ConnectionTested has two: the fetcher's answer, and
# the registry's own when it refuses a test before any fetcher sees it.
EVENT_PUBLISHERS: Mapping[str, frozenset[str]] = {
    "FirmCreated": frozenset({REGISTRY}),
    "AccountantJoined": frozenset({REGISTRY}),
    "AccountantRemoved": frozenset({REGISTRY}),
    "ColleagueInvited": frozenset({REGISTRY}),
    "ColleagueInvitationChanged": frozenset({REGISTRY}),
    "ColleagueInvitationWithdrawn": frozenset({REGISTRY}),
    "ClientAdded": frozenset({REGISTRY}),
    "ClientUpdated": frozenset({REGISTRY}),
    "ClientRemoved": frozenset({REGISTRY}),
    "RefreshScheduleSet": frozenset({REGISTRY}),
    "RefreshRequested": frozenset({REGISTRY}),
    "CompaniesDiscovered": frozenset({FETCHER}),
    "RefreshFailed": frozenset({FETCHER}),
    "RefreshDeferred": frozenset({FETCHER}),
    "ConnectionTestRequested": frozenset({REGISTRY}),
    "ConnectionTested": frozenset({REGISTRY, FETCHER}),
    "NotificationSubscriptionsChecked": frozenset({FETCHER}),
    "BusinessCentralChanged": frozenset({REGISTRY}),
    "CompanySnapshot": frozenset({FETCHER}),
    "TenantAccessGranted": frozenset({REGISTRY}),
    "TenantAccessRevoked": frozenset({REGISTRY}),
    "InvitationCreated": frozenset({INVITATIONS}),
    "InvitationAccepted": frozenset({INVITATIONS}),
    "InvitationRejected": frozenset({INVITATIONS}),
    "InvitationWithdrawn": frozenset({INVITATIONS}),
    "AlertRuleSet": frozenset({REGISTRY}),
    "AlertRuleRemoved": frozenset({REGISTRY}),
    "AlertRaised": frozenset({REGISTRY}),
    "AlertResolved": frozenset({REGISTRY}),
    "AlertDigestDue": frozenset({REGISTRY}),
}

# The one service that declares the whole topology and may change what exists; the record
# streams (RECORD_STREAMS) nobody but an operator deletes or purges.
TOPOLOGY_OWNER = REGISTRY


def owner_of(consumer: ConsumerSpec) -> str:
    """The service that pulls a durable consumer."""
    return next(service for service in ACCESS if consumer.durable in durables_of(service))


def durables_of(service: str) -> frozenset[str]:
    """The durable consumers a service pulls, which it declares itself (the registry declares all)."""
    return frozenset(consumer.durable for consumer in ACCESS[service].consumers)


@dataclass(frozen=True)
class ServiceAccess:
    """What one service does on NATS, from which its permissions follow."""

    consumers: tuple[ConsumerSpec, ...]
    # Takes its role's lease (hub_common.leadership), whose key is the service's name.
    holds_lease: bool = False
    # Command subjects' service names: ``cmd.<name>.>``.
    serves_commands: bool = False
    sends_commands_to: tuple[str, ...] = ()
    writes_buckets: tuple[str, ...] = ()
    reads_buckets: tuple[str, ...] = ()
    # Core NATS notices (nothing stored): subjects it publishes and listens to.
    publishes_notices: tuple[str, ...] = ()
    hears: tuple[str, ...] = ()
    # Streams whose messages it reads one get at a time (Check Errors' dead letters).
    reads_messages_of: tuple[str, ...] = ()


ACCESS: Mapping[str, ServiceAccess] = {
    REGISTRY: ServiceAccess(
        consumers=(REGISTRY_CONSUMER, REGISTRY_SNAPSHOTS_CONSUMER),
        serves_commands=True,
        writes_buckets=(GRANTS_BUCKET,),
        holds_lease=True,
        publishes_notices=("outbox.registry_outbox.appended",),
        hears=("outbox.registry_outbox.appended",),
    ),
    FETCHER: ServiceAccess(
        consumers=(FETCHER_CONSUMER,),
        serves_commands=True,
        writes_buckets=(
            BC_SLOTS_BUCKET,
            BC_HOLD_OFFS_BUCKET,
            BC_WINDOWS_BUCKET,
            NOTIFICATION_STATES_BUCKET,
            REFRESH_PROGRESS_BUCKET,
        ),
        reads_buckets=(GRANTS_BUCKET,),
    ),
    INVITATIONS: ServiceAccess(
        consumers=(INVITATIONS_CONSUMER,),
        serves_commands=True,
        holds_lease=True,
        reads_buckets=(GRANTS_BUCKET,),
        publishes_notices=("outbox.invitations_outbox.appended",),
        hears=("outbox.invitations_outbox.appended",),
    ),
    GATEWAY: ServiceAccess(
        consumers=(GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER),
        sends_commands_to=(REGISTRY, INVITATIONS, FETCHER),
        publishes_notices=("live.*.changes",),
        # The live page's notices, and the fetchers' answers to Test Client URL as they are
        # published (the events themselves: a core subscription sees every publish).
        hears=("live.*.changes", "hub.*.connection.tested"),
        reads_messages_of=(DEAD_LETTER_STREAM,),
    ),
}


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    # May answer the requests it receives (its commands), whatever inbox they name.
    allow_responses: bool = False


def _event_subjects(service: str) -> list[str]:
    subjects = []
    for event_type, publishers in EVENT_PUBLISHERS.items():
        if service in publishers:
            template = EVENT_TYPES[event_type].subject_template
            subjects.append(f"hub.*.{template.replace('{company_id}', '*')}")
    return subjects


def _bucket_streams() -> list[str]:
    return [f"KV_{bucket.name}" for bucket in buckets(StreamLimits())]


def _replaceable_bucket_streams() -> list[str]:
    return [f"KV_{bucket.name}" for bucket in buckets(StreamLimits()) if bucket.replaceable]


def _jetstream_api(service: str, access: ServiceAccess) -> list[str]:
    """The JetStream API calls a service makes: declaring the topology (the registry, which
    owns it) or seeing it declared (the others), pulling and acknowledging its own consumers,
    reading its buckets."""
    owner = service == TOPOLOGY_OWNER
    topology_streams = [EVENTS_STREAM, SNAPSHOTS_STREAM, DEAD_LETTER_STREAM, *_bucket_streams()]
    api = ["$JS.API.STREAM.INFO.*"]
    if owner:
        # Creating a stream, or changing its subjects, would let it capture any subject (a
        # command's, another service's inbox): the owner's alone, and the others wait for it.
        api += [f"$JS.API.STREAM.{verb}.{stream}" for stream in topology_streams for verb in ("CREATE", "UPDATE")]
        api += [f"$JS.API.STREAM.DELETE.{stream}" for stream in _replaceable_bucket_streams()]
        # A consumer's create is also its update: a service that could create its own durable
        # could widen its filter and read every event of the stream (and nats-server does not
        # check a push consumer's deliver subject against its creator's permissions, so one
        # that could create any consumer could deliver stored messages to another's command
        # subject). The owner declares every durable; the others only read and pull their own.
        for consumer in CONSUMERS:
            api.append(f"$JS.API.CONSUMER.CREATE.{consumer.stream}.{consumer.durable}")
            api.append(f"$JS.API.CONSUMER.CREATE.{consumer.stream}.{consumer.durable}.>")
    for consumer in CONSUMERS if owner else access.consumers:
        api.append(f"$JS.API.CONSUMER.INFO.{consumer.stream}.{consumer.durable}")
    for consumer in access.consumers:
        api.append(f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}")
        api.append(f"$JS.ACK.{consumer.stream}.{consumer.durable}.>")
    # The stored message wrapped in the API's JSON answer: unlike a consumer's delivery, never
    # its raw text, whichever subject the request names for the answer.
    api += [f"$JS.API.STREAM.MSG.GET.{stream}" for stream in access.reads_messages_of]
    leases = (LEASES_BUCKET,) if access.holds_lease else ()
    for bucket in sorted({*access.writes_buckets, *access.reads_buckets, *leases}):
        api += [f"$JS.API.DIRECT.GET.KV_{bucket}.>", f"$JS.API.STREAM.MSG.GET.KV_{bucket}"]
    return api


def service_permissions(service: str) -> Permissions:
    access = ACCESS[service]
    publish = _event_subjects(service)
    publish += [f"{DEAD_LETTER_SUBJECT_PREFIX}.{consumer.durable}.*" for consumer in access.consumers]
    publish += [f"cmd.{target}.>" for target in access.sends_commands_to]
    publish += [f"$KV.{bucket}.>" for bucket in access.writes_buckets]
    if access.holds_lease:
        publish.append(f"$KV.{LEASES_BUCKET}.{service}")
    publish += list(access.publishes_notices)
    publish += _jetstream_api(service, access)
    subscribe = [f"{inbox_prefix(service)}.>", *access.hears]
    if access.serves_commands:
        subscribe.append(f"cmd.{service}.>")
    return Permissions(
        publish=tuple(publish),
        subscribe=tuple(subscribe),
        allow_responses=access.serves_commands,
    )


def _user(name: str, password: str, permissions: Permissions | None) -> dict[str, Any]:
    user: dict[str, Any] = {"user": name, "password": password}
    if permissions is not None:
        rules: dict[str, Any] = {
            "publish": {"allow": list(permissions.publish)},
            "subscribe": {"allow": list(permissions.subscribe)},
        }
        if permissions.allow_responses:
            rules["allow_responses"] = True
        user["permissions"] = rules
    return user


def authorization_users(passwords: Mapping[str, str]) -> list[dict[str, Any]]:
    """nats-server's ``authorization.users``: one per service, and the operator (everything).

    ``passwords`` maps each of SERVICES and OPERATOR to the password nats-server is given:
    a value, or a reference such as ``<< $HUB_NATS_PASSWORD_FETCHER >>``.
    """
    users = [_user(service, passwords[service], service_permissions(service)) for service in SERVICES]
    users.append(_user(OPERATOR, passwords[OPERATOR], None))
    return users


def password_variable(user: str) -> str:
    """The environment variable nats-server reads a user's password from in deploy/."""
    return f"HUB_NATS_PASSWORD_{user.upper()}"


def _conf_value(value: Any, indent: str) -> str:
    if isinstance(value, dict):
        inner = indent + "  "
        lines = [f"{inner}{key}: {_conf_value(item, inner)}" for key, item in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"
    if isinstance(value, list):
        inner = indent + "  "
        return "[\n" + "\n".join(f"{inner}{_conf_value(item, inner)}" for item in value) + f"\n{indent}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith("$") and " " not in text and text[1:].isidentifier():
        return text  # a variable nats-server resolves from its environment
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization_conf(passwords: Mapping[str, str], *, no_auth_user: str | None = None) -> str:
    """The ``authorization`` block of a nats-server configuration file."""
    block: dict[str, Any] = {"users": authorization_users(passwords)}
    text = "authorization " + _conf_value(block, "") + "\n"
    if no_auth_user is not None:
        # A connection without a sign-in acts as this user (the tests' own clients).
        text += f'no_auth_user: "{no_auth_user}"\n'
    return text
