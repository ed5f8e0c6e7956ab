"""TLS material and signing key are made once and reused."""

from __future__ import annotations

import ssl
from pathlib import Path

from hub_sandbox.certificates import ensure_certificates, ensure_signing_key


def test_certificates_are_created_once_and_reused(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    contents = {p: p.read_bytes() for p in (first.ca_pem, first.cert_chain_pem, first.private_key_pem)}

    second = ensure_certificates(tmp_path)

    assert second == first
    assert {p: p.read_bytes() for p in contents} == contents
    assert oct(first.private_key_pem.stat().st_mode & 0o777) == "0o600"
    # The chain and key load into a server context; the CA into a client one.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(first.cert_chain_pem, first.private_key_pem)
    ssl.create_default_context(cafile=str(first.ca_pem))


def test_lost_server_certificate_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca = first.ca_pem.read_bytes()
    old_chain = first.cert_chain_pem.read_bytes()
    first.cert_chain_pem.unlink()

    second = ensure_certificates(tmp_path)

    assert second.ca_pem.read_bytes() == ca
    assert second.cert_chain_pem.read_bytes() != old_chain


def test_signing_key_is_persisted(tmp_path: Path) -> None:
    first = ensure_signing_key(tmp_path)
    second = ensure_signing_key(tmp_path)
    assert first.private_key.private_numbers() == second.private_key.private_numbers()
    assert first.certificate == second.certificate
