"""The sandbox's TLS material and token-signing key, made on first start and kept.

Everything lives under the state directory and is reused on later starts: a client that
trusted ``ca.pem`` once keeps trusting the sandbox, and access tokens signed before a
restart still verify after it.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# The names a client may use to reach the sandbox on this machine.
SERVER_IDENTITIES = ("127.0.0.1", "localhost", "::1")

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CHAIN_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
SIGNING_KEY_FILE = "token-signing-key.pem"
SIGNING_CERT_FILE = "token-signing-cert.pem"


@dataclass(frozen=True)
class CertificatePaths:
    """Files a client (ca_pem) and the HTTPS server (the other two) need."""

    ca_pem: Path
    cert_chain_pem: Path
    private_key_pem: Path


@dataclass(frozen=True)
class SigningKey:
    """The RSA key that signs access tokens, and the self-signed certificate that
    publishes it in the JWKS ``x5c`` member, as Entra does."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate


SERVER_NAMES_FILE = "server-names.txt"


def ensure_certificates(state_dir: Path, extra_names: tuple[str, ...] = ()) -> CertificatePaths:
    """Return the CA and server certificate files, creating whatever is missing.

    ``extra_names`` are host names the server is also reached by (``sandbox`` inside a
    compose network); when they change, the server certificate is re-issued by the same CA.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(
        ca_pem=state_dir / CA_FILE,
        cert_chain_pem=state_dir / SERVER_CHAIN_FILE,
        private_key_pem=state_dir / SERVER_KEY_FILE,
    )
    ca_key_path = state_dir / CA_KEY_FILE
    if paths.ca_pem.exists() and ca_key_path.exists():
        ca = trustme.CA.from_pem(paths.ca_pem.read_bytes(), ca_key_path.read_bytes())
    else:
        ca = trustme.CA(organization_name="Accountant Hub sandbox")
        _write_atomically(ca_key_path, ca.private_key_pem.bytes(), secret=True)
        _write_atomically(paths.ca_pem, ca.cert_pem.bytes())
        # A new CA invalidates any server certificate signed by an old one.
        paths.cert_chain_pem.unlink(missing_ok=True)
        paths.private_key_pem.unlink(missing_ok=True)

    identities = tuple(dict.fromkeys((*SERVER_IDENTITIES, *extra_names)))
    names_path = state_dir / SERVER_NAMES_FILE
    recorded = names_path.read_text().split() if names_path.exists() else list(SERVER_IDENTITIES)
    if recorded != list(identities):
        paths.cert_chain_pem.unlink(missing_ok=True)
        paths.private_key_pem.unlink(missing_ok=True)
    if not (paths.cert_chain_pem.exists() and paths.private_key_pem.exists()):
        server = ca.issue_cert(*identities, organization_name="Accountant Hub sandbox")
        chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
        _write_atomically(paths.private_key_pem, server.private_key_pem.bytes(), secret=True)
        _write_atomically(paths.cert_chain_pem, chain)
        _write_atomically(names_path, "\n".join(identities).encode())
    return paths


def ensure_signing_key(state_dir: Path) -> SigningKey:
    """Return the token-signing key, creating and persisting it on first use."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key_path = state_dir / SIGNING_KEY_FILE
    cert_path = state_dir / SIGNING_CERT_FILE
    if key_path.exists() and cert_path.exists():
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path} does not hold an RSA private key")
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return SigningKey(private_key=private_key, certificate=certificate)

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.sandbox")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem, secret=True)
    _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return SigningKey(private_key=private_key, certificate=certificate)


def _write_atomically(path: Path, content: bytes, *, secret: bool = False) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a PEM behind."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file owner-only; only public material is opened up.
        os.chmod(temporary, 0o600 if secret else 0o644)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
