"""The HUB_NATS_* sign-in settings: refused with the setting named, and URLs logged without credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_common.bus import redacted_servers
from hub_common.settings import HubSettings, InsecureSettings


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("nats://hub:s3cret@nats.nats.svc:4222", "nats://***@nats.nats.svc:4222"),
        ("tls://a-token@a:4222, nats://b:4222", "tls://***@a:4222,nats://b:4222"),
        ("nats://u:p@ss@a:4222", "nats://***@a:4222"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_credentials_in_a_url_are_redacted(url: str, logged: str) -> None:
    assert redacted_servers(url) == logged


def test_one_way_of_signing_in(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_text("SUAEXAMPLE\n")
    password = tmp_path / "password"
    password.write_text("pw\n")
    both = HubSettings(nats_nkey_seed_file=seed, nats_user="hub", nats_password_file=password)
    with pytest.raises(InsecureSettings, match="HUB_NATS_NKEY_SEED_FILE and HUB_NATS_USER"):
        both.require_nats_access()
    with pytest.raises(InsecureSettings, match="HUB_NATS_USER and HUB_NATS_PASSWORD_FILE go together"):
        HubSettings(nats_user="hub").require_nats_access()


def test_files_are_checked_naming_the_setting(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(InsecureSettings, match=f"HUB_NATS_PASSWORD_FILE={empty} is empty"):
        HubSettings(nats_user="hub", nats_password_file=empty).require_nats_access()
    not_a_seed = tmp_path / "seed"
    not_a_seed.write_text("-----BEGIN NATS USER JWT-----\n")
    with pytest.raises(InsecureSettings, match=r"HUB_NATS_NKEY_SEED_FILE=.* does not hold a user nkey seed"):
        HubSettings(nats_nkey_seed_file=not_a_seed).require_nats_access()
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    with pytest.raises(InsecureSettings, match=r"HUB_NATS_CA_FILE=.* is not a PEM CA bundle"):
        HubSettings(nats_ca_file=not_a_ca).nats_tls()
    with pytest.raises(InsecureSettings, match="HUB_NATS_CLIENT_CERT_FILE and HUB_NATS_CLIENT_KEY_FILE go together"):
        HubSettings(nats_client_cert_file=not_a_ca).require_nats_access()
