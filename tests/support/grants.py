"""Tests that drive a fetcher without a registry play the registry's part of a grant: the
same mirror into HUB_TENANT_GRANTS (hub_common.grants) that the registry writes."""

from __future__ import annotations

import uuid

from nats.js import JetStreamContext

from hub_common import grants
from hub_common.events import Actor, ActorKind, GrantMethod, TenantAccessGranted, new_envelope


async def grant_access(js: JetStreamContext, firm_id: uuid.UUID, tenant_id: uuid.UUID, tenant: str) -> None:
    granted = TenantAccessGranted(tenant_id=tenant_id, tenant=tenant, method=GrantMethod.CONNECT)
    actor = Actor(kind=ActorKind.CLIENT_ADMIN, id=f"admin@{tenant}")
    await grants.record_access(js, new_envelope(granted, firm_id=firm_id, actor=actor))
