"""The settings of each service as a Kubernetes pod sees them: ``HUB_*`` environment
variables, described as a JSON Schema (deploy/kubernetes/settings.schema.json).

The schema is generated from the services' pydantic settings models, so it cannot drift
from what the services accept (tests/deploy/test_settings_schema.py fails while the
committed file is stale; `make deploy-schema` rewrites it). On top of the models it holds
what a cluster installation needs beyond what a service accepts: production mode, the
operations endpoint on a reachable address, stream replicas a NATS cluster can hold, and
the settings each service cannot run without.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hub_fetcher.settings import FetcherSettings
from hub_gateway.settings import GatewaySettings
from hub_invitations.settings import InvitationsSettings
from hub_registry.settings import RegistrySettings

JsonSchema = dict[str, Any]

ENV_PREFIX = "HUB_"

# One pydantic settings class per service that runs in the cluster (the sandbox never does).
SERVICE_SETTINGS: dict[str, type[BaseModel]] = {
    "registry": RegistrySettings,
    "fetcher": FetcherSettings,
    "invitations": InvitationsSettings,
    "gateway": GatewaySettings,
}

# What every service needs in a cluster, beyond what its model accepts. A key the model does
# not have yet is described here in full, so the schema holds it either way.
_CLUSTER_SETTINGS: dict[str, JsonSchema] = {
    "HUB_MODE": {
        "type": "string",
        "const": "production",
        "description": "Always production in a cluster: dev mode accepts dev bearer tokens.",
    },
    "HUB_OPERATIONS_PORT": {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "description": "The operations endpoint (/livez, /readyz, /metrics); the probes use it.",
    },
    "HUB_OPERATIONS_HOST": {
        "type": "string",
        "enum": ["0.0.0.0", "::"],  # noqa: S104 - the kubelet probes the pod's own address
        "description": "Every interface: the kubelet and Prometheus reach the pod's address, not its loopback.",
    },
    "HUB_STREAM_REPLICAS": {
        "type": "integer",
        "enum": [1, 3, 5],
        "description": "Replicas of each stream and consumer: odd (a Raft majority), at most the NATS nodes.",
    },
    "HUB_NATS_URL": {
        "type": "string",
        "not": {"pattern": "@"},
        "description": (
            "No credentials in the URL: it sits in a ConfigMap. Sign in with HUB_NATS_PASSWORD_FILE"
            " (or HUB_NATS_CREDENTIALS_FILE, HUB_NATS_NKEY_SEED_FILE), a file mounted from a Secret."
        ),
    },
    "HUB_NATS_USER": {"type": "string", "minLength": 1},
}
# A cluster's NATS takes no anonymous client: anything in the cluster could otherwise publish
# commands and events as any service or firm. One of the ways of signing in must be set.
_NATS_SIGN_IN: JsonSchema = {
    "description": (
        "no NATS sign-in: set HUB_NATS_USER and HUB_NATS_PASSWORD_FILE, HUB_NATS_CREDENTIALS_FILE or"
        ' HUB_NATS_NKEY_SEED_FILE (deploy/README.md, "NATS sign-in"); an anonymous client can publish'
        " commands and events as any service or firm"
    ),
    "anyOf": [
        {"required": ["HUB_NATS_USER", "HUB_NATS_PASSWORD_FILE"]},
        {"required": ["HUB_NATS_CREDENTIALS_FILE"]},
        {"required": ["HUB_NATS_NKEY_SEED_FILE"]},
    ],
}
# A service that signs or seals needs its key: its own (`hub derive-keys`), or the hub's
# secret key it is derived from (as before this release).
_SIGNING_KEY: dict[str, JsonSchema] = {
    "invitations": {
        "description": "no key signs the invitation links: set HUB_INVITATION_LINK_KEY (`hub derive-keys`)",
        "anyOf": [{"required": ["HUB_INVITATION_LINK_KEY"]}, {"required": ["HUB_SECRET_KEY"]}],
    },
}
_ALWAYS_REQUIRED = ("HUB_MODE", "HUB_NATS_URL", "HUB_OPERATIONS_PORT", "HUB_OPERATIONS_HOST")

# Settings that carry a credential: a pod must get them from a Secret, never a ConfigMap.
# The models mark theirs as SecretStr (writeOnly in the schema); a database URL holds the
# database password, so it is one too.
_SECRET_SETTINGS: frozenset[str] = frozenset({"HUB_DATABASE_URL"})

_DATABASE_URL: JsonSchema = {
    "type": "string",
    "pattern": r"^postgresql(\+[a-z0-9]+)?://",
    "writeOnly": True,
    "description": "PostgreSQL (each service migrates its own tables); a SQLite file would vanish with the pod.",
}

# Per service: settings it cannot do without in a cluster, and cluster-only rules.
_SERVICE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "registry": ("HUB_DATABASE_URL",),
    "fetcher": ("HUB_ENTRA_CLIENT_ID", "HUB_ENTRA_CLIENT_SECRET"),
    "invitations": ("HUB_DATABASE_URL", "HUB_SMTP_HOST", "HUB_MAIL_FROM", "HUB_PUBLIC_URL"),
    "gateway": (
        "HUB_DATABASE_URL",
        "HUB_SECRET_KEY",
        "HUB_ENTRA_CLIENT_ID",
        "HUB_ENTRA_CLIENT_SECRET",
        "HUB_PUBLIC_URL",
    ),
}


def env_name(field_name: str) -> str:
    """The environment variable pydantic-settings reads a field from."""
    return ENV_PREFIX + field_name.upper()


def settings_schema() -> JsonSchema:
    """The JSON Schema of every service's environment, keyed by service name."""
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in SERVICE_SETTINGS.values()
    ]
    _, generated = models_json_schema(models, ref_template="#/$defs/{model}")
    model_definitions: dict[str, JsonSchema] = generated["$defs"]
    definitions: dict[str, JsonSchema] = {
        name: definition
        for name, definition in model_definitions.items()
        if name not in {model.__name__ for model in SERVICE_SETTINGS.values()}
    }
    for service, model in SERVICE_SETTINGS.items():
        definitions[service] = _environment_schema(service, model_definitions[model.__name__])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Accountant Hub: the HUB_* environment of each service in a Kubernetes installation",
        "description": (
            "Generated from the services' settings models by `hub deploy-schema`; do not edit."
            " `hub deploy-check OVERLAY` validates every rendered Deployment's environment"
            " (its ConfigMaps, literal values and Secret references) against it."
        ),
        "type": "object",
        "properties": {service: {"$ref": f"#/$defs/{service}"} for service in SERVICE_SETTINGS},
        "additionalProperties": False,
        "$defs": dict(sorted(definitions.items())),
    }


def _environment_schema(service: str, model_schema: JsonSchema) -> JsonSchema:
    properties: dict[str, JsonSchema] = {}
    for field_name, field_schema in model_schema["properties"].items():
        properties[env_name(field_name)] = _environment_property(field_schema)
    for name, rules in _CLUSTER_SETTINGS.items():
        properties[name] = {**properties.get(name, {}), **rules}
    if "HUB_DATABASE_URL" in _SERVICE_REQUIREMENTS[service]:
        properties["HUB_DATABASE_URL"] = {**properties["HUB_DATABASE_URL"], **_DATABASE_URL}
    return {
        "type": "object",
        "description": f"The {service}'s environment: {model_schema.get('title', service)}.",
        "properties": dict(sorted(properties.items())),
        "required": sorted({*_ALWAYS_REQUIRED, *_SERVICE_REQUIREMENTS[service]}),
        "allOf": [_NATS_SIGN_IN, *([_SIGNING_KEY[service]] if service in _SIGNING_KEY else [])],
        # A misspelt variable would be ignored by the service without a word: reject it.
        "additionalProperties": False,
    }


def _environment_property(field_schema: JsonSchema) -> JsonSchema:
    """A field's schema without what means nothing for an environment variable."""
    schema = {key: value for key, value in copy.deepcopy(field_schema).items() if key != "title"}
    if is_secret(schema):
        # The model's default of a secret is masked ("**********"): not a value to show.
        schema.pop("default", None)
    return schema


def is_secret(schema: JsonSchema) -> bool:
    """Whether a property holds a credential (SecretStr is writeOnly in pydantic's schema)."""
    if schema.get("writeOnly") is True:
        return True
    return any(is_secret(branch) for branch in schema.get("anyOf", []))


def secret_settings(schema: JsonSchema, service: str) -> frozenset[str]:
    """The variables of a service that must come from a Secret."""
    properties: dict[str, JsonSchema] = schema["$defs"][service]["properties"]
    marked = {name for name, property_schema in properties.items() if is_secret(property_schema)}
    return frozenset(marked | (_SECRET_SETTINGS & properties.keys()))


_INTEGER = re.compile(r"^[+-]?\d+$")
# The strings pydantic reads as booleans.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def typed_environment(environment: dict[str, str], service_schema: JsonSchema, schema: JsonSchema) -> dict[str, Any]:
    """Environment strings read as the types the schema expects, as pydantic-settings reads them.

    A value that does not read as its type stays a string, so validation names it: "lots"
    for an integer fails as "'lots' is not of type 'integer'".
    """
    properties: dict[str, JsonSchema] = service_schema["properties"]
    return {
        name: _typed(value, _json_types(properties[name], schema)) if name in properties else value
        for name, value in environment.items()
    }


def _typed(value: str, types: set[str]) -> Any:
    text = value.strip()
    if "integer" in types and _INTEGER.match(text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return value


def _json_types(property_schema: JsonSchema, schema: JsonSchema) -> set[str]:
    """Every JSON type a property admits, through $ref, anyOf and allOf."""
    reference = property_schema.get("$ref")
    if isinstance(reference, str):
        return _json_types(schema["$defs"][reference.removeprefix("#/$defs/")], schema)
    declared = property_schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or [])
    for branch in [*property_schema.get("anyOf", []), *property_schema.get("allOf", [])]:
        types |= _json_types(branch, schema)
    return types
