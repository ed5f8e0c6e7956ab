"""Only the gateway needs HUB_SECRET_KEY; the fetcher, the registry and the invitations
service get one key derived from it each (`hub derive-keys`), which signs and seals exactly
what the secret key signed and sealed before: nothing made before changes."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from hub_cli.main import app
from hub_common.change_notifications import CompanyAddress, NotificationSigner
from hub_common.purpose_keys import SETTING, Purpose
from hub_common.sealing import Sealer
from hub_common.settings import HubSettings, InsecureSettings, Mode

SECRET = "a-production-secret-key-that-is-long-and-random-0123456789"


def _derived() -> dict[str, str]:
    result = CliRunner().invoke(app, ["derive-keys"], env={"HUB_SECRET_KEY": SECRET, "HUB_MODE": "production"})
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.splitlines())
    assert set(lines) == set(SETTING.values())
    return lines


def _settings(**environment: str) -> HubSettings:
    return HubSettings.model_validate(
        {"mode": Mode.PRODUCTION, **{k.removeprefix("HUB_").lower(): v for k, v in environment.items()}}
    )


def test_a_services_own_key_signs_and_seals_what_the_secret_key_did() -> None:
    derived = _derived()
    address = CompanyAddress(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    fetcher = _settings(HUB_NOTIFICATION_KEY=derived["HUB_NOTIFICATION_KEY"])
    # Each key as it was derived before it could be set on its own (frozen here, not read
    # from the code that derives it).
    before = {
        purpose: hmac.new(SECRET.encode(), derivation, hashlib.sha256).digest()
        for purpose, derivation in (
            (Purpose.NOTIFICATIONS, b"business-central-notifications/v1"),
            (Purpose.WEBHOOK_SECRETS, b"hub-sealing:alert-webhook-secrets"),
            (Purpose.INVITATION_LINKS, b"hub-invitations/link/v1"),
        )
    }
    signer = NotificationSigner(fetcher.key_for(Purpose.NOTIFICATIONS))
    assert signer.key(address) == NotificationSigner(before[Purpose.NOTIFICATIONS]).key(address)
    assert NotificationSigner.of_secret(SECRET).key(address) == signer.key(address)
    registry = _settings(HUB_WEBHOOK_SEALING_KEY=derived["HUB_WEBHOOK_SEALING_KEY"])
    sealed = Sealer(before[Purpose.WEBHOOK_SECRETS]).seal("whsec_1", context="rule-1")
    assert Sealer(registry.key_for(Purpose.WEBHOOK_SECRETS)).open(sealed, context="rule-1") == "whsec_1"
    invitations = _settings(HUB_INVITATION_LINK_KEY=derived["HUB_INVITATION_LINK_KEY"])
    assert invitations.key_for(Purpose.INVITATION_LINKS) == before[Purpose.INVITATION_LINKS]
    # Each holds its own key only: the secret key itself stays the public default there.
    for settings, purpose in ((fetcher, Purpose.NOTIFICATIONS), (registry, Purpose.WEBHOOK_SECRETS)):
        settings.require_key_for(purpose)
        with pytest.raises(InsecureSettings):
            settings.require_secret_key()


def test_without_its_own_key_a_service_needs_a_real_secret_key() -> None:
    with pytest.raises(InsecureSettings, match="HUB_INVITATION_LINK_KEY"):
        _settings().require_key_for(Purpose.INVITATION_LINKS)
    _settings(HUB_SECRET_KEY=SECRET).require_key_for(Purpose.INVITATION_LINKS)


def test_a_mistyped_key_is_refused_when_the_settings_are_read() -> None:
    with pytest.raises(ValidationError, match="hub derive-keys"):
        _settings(HUB_NOTIFICATION_KEY=_derived()["HUB_NOTIFICATION_KEY"][:-4])


def test_keys_are_not_derived_from_the_public_dev_key() -> None:
    result = CliRunner().invoke(app, ["derive-keys"], env={"HUB_MODE": "dev", "HUB_SECRET_KEY": ""})
    assert result.exit_code == 2 and "HUB_SECRET_KEY must be set" in result.output
