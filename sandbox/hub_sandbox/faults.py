"""Faults on demand, per tenant: what the admin API sets and the BC routes obey.

A fault applies to every BC request of its tenant (API v2.0, $batch, ODataV4) or, for
``consent_withdrawn`` and ``entra_not_json``, to its token requests. With ``count`` set it applies to that many
matching requests and then clears itself ("fail the next N requests, then recover"), so
clients' retries of transient failures can be tested.
"""

from __future__ import annotations

import threading
import uuid
from enum import StrEnum

from pydantic import BaseModel, Field


class FaultKind(StrEnum):
    LATENCY = "latency"  # latency_ms added to every request
    INVALID_CREDENTIALS = "invalid_credentials"  # 401 Authentication_InvalidCredentials
    COMPANY_FORBIDDEN = "company_forbidden"  # 403 for company_id (or every company)
    ENVIRONMENT_REMOVED = "environment_removed"  # 404 NoEnvironment for environment (or all)
    UPGRADING = "upgrading"  # 503 with Retry-After: the environment is being updated
    TOO_MANY_REQUESTS = "too_many_requests"  # 429 with Retry-After, whatever the counts
    TIMEOUT = "timeout"  # hang timeout_seconds (or until the client leaves), then 504
    MALFORMED_BODY = "malformed_body"  # 200 with a body that is not valid JSON
    OVERSIZED_BODY = "oversized_body"  # 200 streaming size_mb of valid-looking JSON
    CONSENT_WITHDRAWN = "consent_withdrawn"  # token endpoint: unauthorized_client AADSTS700016
    ENTRA_NOT_JSON = "entra_not_json"  # token endpoint: 200 with an HTML page instead of JSON
    ENTRA_UNAVAILABLE = "entra_unavailable"  # token endpoint: 503 with Retry-After, an Entra incident
    ENTRA_THROTTLED = "entra_throttled"  # token endpoint: 429 AADSTS90055 with Retry-After
    # the tenant's OpenID configuration (what msal reads before any sign-in): 503, an incident
    ENTRA_DISCOVERY_UNAVAILABLE = "entra_discovery_unavailable"
    TRICKLE = "trickle"  # 200, the answer sent one byte every trickle_interval_seconds
    REPEATED_NEXT_LINK = "repeated_next_link"  # a collection's @odata.nextLink is the page just served
    DUPLICATE_COMPANY_IDS = "duplicate_company_ids"  # companies lists its first company twice
    # companies lists 1,001 (the first one's copies, each under an id and name of its own):
    # more than the hub's events carry, as no real environment holds.
    TOO_MANY_COMPANIES = "too_many_companies"
    ENTITY_NOT_PUBLISHED = "entity_not_published"  # 404 for entity_set, as where its API page is absent
    # 500 Internal_ServerError for entity_set: BC failing inside (a deadlock, a metadata
    # sync after an extension's install, a platform incident), which a later try may pass.
    SERVER_ERROR = "server_error"
    CUES_WITHOUT_DECIMALS = "cues_without_decimals"  # cue services: 400, no *Decimal fields (older BC)
    # company_id's (or every company's) cue records were never made: each cue page inserts
    # its own when it opens, which a read with read-only intent (Data-Access-Intent:
    # ReadOnly) may not do (500; the wording is the sandbox's); a read without it makes it.
    CUE_RECORD_MISSING = "cue_record_missing"


class FaultSpec(BaseModel):
    """One fault of a tenant; only the fields its kind uses matter."""

    kind: FaultKind
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    company_id: uuid.UUID | None = Field(default=None, description="company_forbidden: None = all")
    environment: str | None = Field(default=None, description="environment_removed: None = all")
    entity_set: str | None = Field(
        default=None,
        max_length=100,
        description=(
            "entity_not_published, server_error, latency, timeout, upgrading, too_many_requests: only requests whose"
            " path ends at this entity set or web service ($batch for a batch); None = all"
        ),
    )
    retry_after_seconds: int = Field(
        default=60,
        ge=0,
        description="upgrading, too_many_requests, entra_unavailable, entra_throttled, entra_discovery_unavailable",
    )
    send_retry_after: bool = Field(
        default=True,
        description="too_many_requests: False answers without Retry-After (BC documents none on its 429)",
    )
    timeout_seconds: float = Field(default=600.0, ge=0)
    size_mb: int = Field(default=64, ge=1, le=4096, description="oversized_body")
    trickle_interval_seconds: float = Field(default=2.0, gt=0, le=600, description="trickle")
    count: int | None = Field(default=None, ge=1, description="None: until deleted")


class ActiveFault(BaseModel):
    spec: FaultSpec
    remaining: int | None


class FaultBoard:
    """The faults of every tenant; thread-safe (company checks run in worker threads)."""

    def __init__(self) -> None:
        self._faults: dict[uuid.UUID, dict[FaultKind, ActiveFault]] = {}
        self._lock = threading.Lock()

    def put(self, tenant_id: uuid.UUID, spec: FaultSpec) -> None:
        with self._lock:
            self._faults.setdefault(tenant_id, {})[spec.kind] = ActiveFault(spec=spec, remaining=spec.count)

    def remove(self, tenant_id: uuid.UUID, kind: FaultKind | None = None) -> None:
        with self._lock:
            if kind is None:
                self._faults.pop(tenant_id, None)
            else:
                self._faults.get(tenant_id, {}).pop(kind, None)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def of_tenant(self, tenant_id: uuid.UUID) -> list[ActiveFault]:
        with self._lock:
            return [fault.model_copy() for fault in self._faults.get(tenant_id, {}).values()]

    def all(self) -> dict[uuid.UUID, list[ActiveFault]]:
        with self._lock:
            return {t: [f.model_copy() for f in faults.values()] for t, faults in self._faults.items() if faults}

    def take(
        self,
        tenant_id: uuid.UUID,
        kind: FaultKind,
        *,
        company_id: uuid.UUID | None = None,
        environment: str | None = None,
        entity_set: str | None = None,
    ) -> FaultSpec | None:
        """The fault if it applies to this request, counting the request against it."""
        with self._lock:
            faults = self._faults.get(tenant_id)
            fault = faults.get(kind) if faults else None
            if fault is None or faults is None:
                return None
            spec = fault.spec
            if spec.company_id is not None and spec.company_id != company_id:
                return None
            if spec.environment is not None and (
                environment is None or spec.environment.casefold() != environment.casefold()
            ):
                return None
            if spec.entity_set is not None and spec.entity_set != entity_set:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del faults[kind]
            return spec
