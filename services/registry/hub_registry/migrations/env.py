"""Alembic environment of the registry: see hub_common.db.run_alembic_env."""

from alembic import context

from hub_common.db import run_alembic_env

run_alembic_env(
    context.config.attributes["connection_url"],
    context.config.attributes.get("version_table", "registry_alembic_version"),
)
