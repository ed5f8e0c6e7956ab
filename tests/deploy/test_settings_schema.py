"""deploy/kubernetes/settings.schema.json is what the services' settings models make now,
and it reads environment strings the way pydantic-settings does."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel

from hub_cli.deploy_settings import SERVICE_SETTINGS, env_name, secret_settings, settings_schema, typed_environment

COMMITTED = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "settings.schema.json"


def test_committed_schema_is_current() -> None:
    assert json.loads(COMMITTED.read_text()) == settings_schema(), (
        "run `make deploy-schema` and commit deploy/kubernetes/settings.schema.json"
    )


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(settings_schema())


@pytest.mark.parametrize(("service", "model"), SERVICE_SETTINGS.items())
def test_every_field_of_a_service_is_a_variable(service: str, model: type[BaseModel]) -> None:
    properties = settings_schema()["$defs"][service]["properties"]

    assert {env_name(name) for name in model.model_fields} <= properties.keys()


def test_credentials_must_come_from_secrets() -> None:
    schema = settings_schema()

    assert {"HUB_SECRET_KEY", "HUB_ENTRA_CLIENT_SECRET", "HUB_DATABASE_URL", "HUB_SMTP_PASSWORD"} <= secret_settings(
        schema, "invitations"
    )
    assert "HUB_SMTP_HOST" not in secret_settings(schema, "invitations")
    # A secret's masked default ("**********") is not published as if it were a value.
    assert "default" not in schema["$defs"]["gateway"]["properties"]["HUB_SECRET_KEY"]


def test_environment_strings_are_read_as_their_types() -> None:
    schema = settings_schema()
    fetcher = schema["$defs"]["fetcher"]

    typed = typed_environment(
        {
            "HUB_CONCURRENCY": "150",
            "HUB_USE_CUE_SERVICES": "off",
            "HUB_HTTP_READ_TIMEOUT_SECONDS": "2.5",
            "HUB_NATS_URL": "nats://nats:4222",
            "HUB_TENANT_MAX_CONCURRENT_REQUESTS": "many",
        },
        fetcher,
        schema,
    )

    assert typed == {
        "HUB_CONCURRENCY": 150,
        "HUB_USE_CUE_SERVICES": False,
        "HUB_HTTP_READ_TIMEOUT_SECONDS": 2.5,
        "HUB_NATS_URL": "nats://nats:4222",
        # Not a number: left as written, so validation names it.
        "HUB_TENANT_MAX_CONCURRENT_REQUESTS": "many",
    }
