"""Which firm may read which client tenant: the registry's grants, published for the fetchers.

The registry owns grants (its table, its TenantAccessGranted/Revoked events). Fetchers must
check a grant before every read, at any scale, without a database of their own, so the
registry mirrors each grant's current state into a NATS KV bucket keyed by firm and tenant.

The registry's outbox relay writes the record just before it publishes the grant's event,
in outbox order: a ClientAdded or RefreshRequested committed after a grant can only reach a
fetcher once the record is there, and a relay that crashes in between writes it again.
Each record carries the time and id of the event it comes from, and an older event never
overwrites a newer record, so a replay changes nothing. The registry records the changes of
one firm's access to one tenant at increasing moments whatever its replicas' clocks
(hub_registry.service.tenant_grants.changed_at), so the latest is the last made.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, ValidationError

from hub_common import kv
from hub_common.events import Envelope, TenantAccessGranted, TenantAccessRevoked
from hub_common.logging import get_logger

logger = get_logger(__name__)

GRANTS_BUCKET = "HUB_TENANT_GRANTS"
GRANTS_BUCKET_DESCRIPTION = "Which firm may read which client tenant (mirrors the registry's grants)."
# Two writers may race for one key; after this many lost races the caller's retry takes over.
_COMPARE_AND_SET_ATTEMPTS = 5


class GrantRecord(BaseModel):
    """The current state of one firm's access to one tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    granted: bool
    changed_at: datetime
    event_id: uuid.UUID

    def is_older_than(self, other: GrantRecord) -> bool:
        return (self.changed_at, str(self.event_id)) < (other.changed_at, str(other.event_id))


def grant_key(firm_id: uuid.UUID, tenant_id: uuid.UUID) -> str:
    return f"{firm_id}.{tenant_id}"


async def _bucket(js: JetStreamContext) -> KeyValue:
    # Every process declares the topology (hub_common.streams), bucket included, at start.
    return await js.key_value(GRANTS_BUCKET)


async def record_access(
    js: JetStreamContext, envelope: Envelope[TenantAccessGranted] | Envelope[TenantAccessRevoked]
) -> bool:
    """Mirror a grant event into the bucket; True when the record changed."""
    data = envelope.data
    wanted = GrantRecord(
        granted=isinstance(data, TenantAccessGranted), changed_at=envelope.occurred_at, event_id=envelope.id
    )
    key = grant_key(envelope.firm_id, data.tenant_id)
    bucket = await _bucket(js)
    for _ in range(_COMPARE_AND_SET_ATTEMPTS):
        try:
            entry = await bucket.get(key)
        except nats.js.errors.KeyNotFoundError:
            if await kv.create(bucket, key, wanted.model_dump_json().encode()) is None:
                continue
            return True
        current = _parse(entry.value)
        if current is not None and (current == wanted or wanted.is_older_than(current)):
            return False
        assert entry.revision is not None
        if await kv.update(bucket, key, wanted.model_dump_json().encode(), last=entry.revision) is None:
            continue
        return True
    raise RuntimeError(f"grant record {key} kept changing under us")


def _parse(value: bytes | None) -> GrantRecord | None:
    try:
        return GrantRecord.model_validate_json(value or b"")
    except ValidationError:
        # A record nobody could have written: treat it as absent so the event rewrites it.
        logger.warning("unreadable grant record overwritten")
        return None


async def current_record(js: JetStreamContext, firm_id: uuid.UUID, tenant_id: uuid.UUID) -> GrantRecord | None:
    """The firm's access to the tenant as last granted or revoked; None if never."""
    bucket = await _bucket(js)
    try:
        entry = await bucket.get(grant_key(firm_id, tenant_id))
    except nats.js.errors.KeyNotFoundError:
        return None
    return _parse(entry.value)


async def has_access(js: JetStreamContext, firm_id: uuid.UUID, tenant_id: uuid.UUID | None) -> bool:
    """Whether the firm may read the tenant now. No tenant id (an unresolved tenant) is no."""
    if tenant_id is None:
        return False
    record = await current_record(js, firm_id, tenant_id)
    return record is not None and record.granted


async def revoked_at(js: JetStreamContext, firm_id: uuid.UUID, tenant: str) -> datetime | None:
    """When the firm's access to the tenant (its directory id) was last removed; None while
    it holds access, if it never had any, or for a tenant that is not an id."""
    try:
        tenant_id = uuid.UUID(tenant)
    except ValueError:
        return None
    record = await current_record(js, firm_id, tenant_id)
    return record.changed_at if record is not None and not record.granted else None
