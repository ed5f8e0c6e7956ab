"""Tenant access grants, and clients keyed on their tenant's directory id.

Clients that came through an accepted invitation, and the sample client, were reachable
before grants existed because the client's administrator (or the operator) had allowed it:
they keep that access as grants, each written with its TenantAccessGranted event in the
outbox so the audit log and the fetchers learn of it. Their tenant id is the one the
invitation carried (a GUID). Cards added by hand get no grant: they wait for the client's
permission, which is the point of grants.

Revision ID: 0004
Revises: 0003
"""

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MIGRATION_ACTOR = {"kind": "service", "id": "registry-migration-0004", "display_name": None}


def _tenant_id(tenant: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(tenant)
    except ValueError:
        return None


def upgrade() -> None:
    op.add_column("registry_clients", sa.Column("tenant_id", sa.Uuid(), nullable=True))
    op.create_index("ix_registry_clients_tenant_id", "registry_clients", ["tenant_id"])
    op.create_index(
        "registry_clients_live_tenant_id",
        "registry_clients",
        ["firm_id", "tenant_id", "environment"],
        unique=True,
        sqlite_where=sa.text("removed_at IS NULL AND tenant_id IS NOT NULL"),
        postgresql_where=sa.text("removed_at IS NULL AND tenant_id IS NOT NULL"),
    )
    grants = op.create_table(
        "registry_tenant_grants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False, index=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("granted_by", sa.String(320), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(500), nullable=True),
    )
    op.create_index(
        "registry_tenant_grants_live",
        "registry_tenant_grants",
        ["firm_id", "tenant_id"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    connection = op.get_bind()
    clients = sa.table(
        "registry_clients",
        sa.column("id", sa.Uuid()),
        sa.column("firm_id", sa.Uuid()),
        sa.column("tenant", sa.String()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("source", sa.String()),
        sa.column("removed_at", sa.DateTime(timezone=True)),
    )
    outbox = sa.table(
        "registry_outbox",
        sa.column("event_id", sa.String()),
        sa.column("event_type", sa.String()),
        sa.column("payload", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    granted: set[tuple[uuid.UUID, uuid.UUID]] = set()
    rows = connection.execute(
        sa.select(clients.c.id, clients.c.firm_id, clients.c.tenant, clients.c.source).where(
            clients.c.removed_at.is_(None)
        )
    ).all()
    for client_id, firm_id, tenant, source in rows:
        tenant_id = _tenant_id(tenant)
        if tenant_id is None:
            continue
        connection.execute(sa.update(clients).where(clients.c.id == client_id).values(tenant_id=tenant_id))
        if source not in ("invitation", "sample") or (firm_id, tenant_id) in granted:
            continue
        granted.add((firm_id, tenant_id))
        method = "invitation" if source == "invitation" else "sample"
        connection.execute(
            grants.insert().values(
                id=uuid.uuid4(),
                firm_id=firm_id,
                tenant_id=tenant_id,
                tenant=tenant,
                method=method,
                granted_at=now,
                # These clients were read before grants existed: the app's consent was there.
                confirmed_at=now,
            )
        )
        event_id = uuid.uuid4()
        envelope = {
            "id": str(event_id),
            "type": "TenantAccessGranted",
            "version": 1,
            "firm_id": str(firm_id),
            "occurred_at": now.isoformat(),
            "actor": MIGRATION_ACTOR,
            "correlation_id": f"migration-0004-{event_id}",
            "causation_id": None,
            "data": {
                "tenant_id": str(tenant_id),
                "tenant": tenant,
                "method": method,
                "client_id": str(client_id),
                "granted_by": None,
            },
        }
        connection.execute(
            outbox.insert().values(
                event_id=str(event_id),
                event_type="TenantAccessGranted",
                payload=json.dumps(envelope),
                created_at=now,
            )
        )


def downgrade() -> None:
    op.drop_index("registry_tenant_grants_live", table_name="registry_tenant_grants")
    op.drop_table("registry_tenant_grants")
    op.drop_index("registry_clients_live_tenant_id", table_name="registry_clients")
    op.drop_index("ix_registry_clients_tenant_id", table_name="registry_clients")
    op.drop_column("registry_clients", "tenant_id")
