"""Dev bearer tokens: accepted in dev and test mode only, and only when signed by the hub."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from hub_cli.main import app
from hub_common.settings import HubSettings, Mode
from hub_gateway.auth import NotAuthenticated, issue_dev_token, read_dev_token

KEY = SecretStr("a-test-secret-key-that-is-long-enough-for-hs256")


def test_dev_token_round_trip_in_dev_mode() -> None:
    settings = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=KEY)
    token = issue_dev_token(settings, "Alice@Firm.example")
    assert read_dev_token(settings, token) == ("alice@firm.example", "Alice")


def test_dev_token_is_refused_in_production() -> None:
    dev = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=KEY)
    production = HubSettings(_env_file=None, mode=Mode.PRODUCTION, secret_key=KEY)
    with pytest.raises(NotAuthenticated, match="outside dev mode"):
        read_dev_token(production, issue_dev_token(dev, "alice@firm.example"))


def test_a_token_signed_with_another_key_is_refused() -> None:
    ours = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=KEY)
    theirs = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=SecretStr("x" * 48))
    with pytest.raises(NotAuthenticated, match="invalid token"):
        read_dev_token(ours, issue_dev_token(theirs, "mallory@firm.example"))


def test_hub_dev_token_prints_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY", KEY.get_secret_value())
    monkeypatch.setenv("HUB_MODE", "dev")
    result = CliRunner().invoke(app, ["dev-token", "bob@firm.example"])
    assert result.exit_code == 0, result.output
    settings = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=KEY)
    assert read_dev_token(settings, result.output.strip())[0] == "bob@firm.example"


def test_the_entra_credential_is_the_certificate_when_one_is_configured(tmp_path: object) -> None:
    from pathlib import Path

    key = Path(str(tmp_path)) / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMII...\n-----END PRIVATE KEY-----\n")
    with_secret = HubSettings(_env_file=None, entra_client_secret=SecretStr("s3cret"))
    assert with_secret.entra_credential() == "s3cret"
    with_certificate = HubSettings(
        _env_file=None, entra_client_certificate_key=key, entra_client_certificate_thumbprint="AB12"
    )
    assert with_certificate.entra_credential() == {"private_key": key.read_text(), "thumbprint": "AB12"}
    half = HubSettings(_env_file=None, entra_client_certificate_key=key)
    with pytest.raises(ValueError, match="THUMBPRINT"):
        half.entra_credential()
