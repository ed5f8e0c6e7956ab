"""Dev bearer tokens: accepted in dev mode only, and only when signed by the hub; outside
dev mode the services refuse to start with a guessable secret key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from hub_cli.main import app
from hub_common.settings import DEV_SECRET_KEY, HubSettings, InsecureSettings, Mode
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


@pytest.mark.parametrize("mode", [Mode.TEST, Mode.PRODUCTION])
def test_dev_tokens_are_dev_mode_only(mode: Mode) -> None:
    dev = HubSettings(_env_file=None, mode=Mode.DEV, secret_key=KEY)
    other = HubSettings(_env_file=None, mode=mode, secret_key=KEY)
    with pytest.raises(NotAuthenticated, match="outside dev mode"):
        read_dev_token(other, issue_dev_token(dev, "alice@firm.example"))


@pytest.mark.parametrize(
    "key",
    [DEV_SECRET_KEY, "too-short", "a" * 64, None],
    ids=["the public default", "too short", "one character repeated", "not set"],
)
@pytest.mark.parametrize("mode", [Mode.TEST, Mode.PRODUCTION])
def test_outside_dev_mode_a_guessable_secret_key_is_refused(mode: Mode, key: str | None) -> None:
    settings = HubSettings(_env_file=None, mode=mode)
    if key is not None:
        settings = settings.model_copy(update={"secret_key": SecretStr(key)})
    with pytest.raises(InsecureSettings, match="HUB_SECRET_KEY"):
        settings.require_secret_key()


def test_a_random_secret_key_and_dev_mode_start() -> None:
    HubSettings(_env_file=None, mode=Mode.PRODUCTION, secret_key=KEY).require_secret_key()
    HubSettings(_env_file=None, mode=Mode.DEV).require_secret_key()


@pytest.mark.parametrize("service", ["gateway", "invitations"])
def test_a_service_without_a_secret_key_says_so_and_exits(service: str) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment |= {"HUB_MODE": "production", "HUB_NATS_URL": "nats://127.0.0.1:1"}
    finished = subprocess.run(
        [sys.executable, "-m", "hub_cli", service], env=environment, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert "HUB_SECRET_KEY" in finished.stderr and "Traceback" not in finished.stderr


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
