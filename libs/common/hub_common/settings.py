"""The one settings base every service extends.

Every value comes from the environment with the ``HUB_`` prefix (or a ``.env`` file),
so one process tree (`hub up`) and one container per service (docker-compose, deploy/)
are configured the same way.
"""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub_common import purpose_keys


class Mode(StrEnum):
    """How the hub runs: dev allows the dev bearer token and console logs."""

    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class TracingExporter(StrEnum):
    """Where a process sends its OpenTelemetry spans."""

    OFF = "off"
    CONSOLE = "console"
    # OTLP over HTTP/protobuf, to ``otlp_endpoint`` (a collector, Jaeger, Tempo ...).
    OTLP = "otlp"


# The default key is in this public source: it may sign nothing outside dev mode.
DEV_SECRET_KEY = "dev-only-secret-change-me"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32
# How long JetStream remembers a message id to drop a republished event. nats-server refuses
# a stream whose max age is shorter than it, so a stream keeps messages at least this long.
STREAM_DUPLICATE_WINDOW_SECONDS = 120.0
# How long a stream keeps its messages: 0 (forever) or no shorter than its duplicate window,
# which nats-server refuses. Said in the deploy schema too, so `hub deploy-check` refuses it
# before a registry would (see _kept_past_the_duplicate_window).
StreamMaxAge = Annotated[
    float,
    Field(
        ge=0,
        json_schema_extra={"not": {"exclusiveMinimum": 0, "exclusiveMaximum": STREAM_DUPLICATE_WINDOW_SECONDS}},
    ),
]


class InsecureSettings(ValueError):
    """Settings a service refuses to start with; the message names the setting."""


class HubSettings(BaseSettings):
    """Settings shared by every process of the hub."""

    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    mode: Mode = Mode.PRODUCTION
    service_name: str = "hub"
    log_level: str = "INFO"
    log_format: LogFormat | None = Field(
        default=None, description="Defaults to console in dev and test, JSON in production."
    )

    # No credentials in it: it sits in a ConfigMap. Sign in with the files below instead.
    nats_url: str = "nats://127.0.0.1:4222"
    nats_connect_timeout_seconds: float = 5.0
    # How the process signs in to NATS (hub_common.bus), each secret a file mounted from a
    # Secret so that none is in the environment or a ConfigMap. At most one way: a .creds file
    # (a user JWT and its nkey seed: NATS's accounts with an operator, nsc, Synadia Cloud), a
    # user nkey seed file (an ``nkey`` user of the server's config), or a user and a file
    # holding their password. None of them: no sign-in, for a dev broker only.
    nats_credentials_file: Path | None = None
    nats_nkey_seed_file: Path | None = None
    nats_user: str = ""
    nats_password_file: Path | None = None
    # TLS to NATS: the CA that signed the servers' certificates (setting it turns TLS on);
    # a client certificate and its key where the servers require one (verify, or
    # verify_and_map to sign in by the certificate).
    nats_ca_file: Path | None = None
    nats_client_cert_file: Path | None = None
    nats_client_key_file: Path | None = None

    database_url: str = "sqlite:///.hub/hub.db"

    # Operations endpoint (hub_common.operations): /livez, /readyz and /metrics on a port of
    # its own, never the gateway's public one. 0 = off; the container images set 9464 and
    # 0.0.0.0. Loopback by default, so a developer's metrics are not on the network.
    operations_port: int = Field(default=0, ge=0, le=65535)
    operations_host: str = "127.0.0.1"
    # How often the gauges read from the broker or a database (consumer lag, outbox
    # backlog, staleness) are sampled.
    metrics_sample_seconds: float = Field(default=5.0, gt=0)

    # Traces (hub_common.tracing): off by default. The OTLP endpoint takes HTTP/protobuf.
    tracing_exporter: TracingExporter = TracingExporter.OFF
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"

    # Retention and delivery of the streams and durable consumers (hub_common.streams).
    # Every process reconciles them at start-up: give every process the same values.
    # HUB_EVENTS, the audit log: how long events are kept (0 = forever).
    audit_max_age_seconds: StreamMaxAge = 0
    # HUB_SNAPSHOTS: the last N snapshots kept per company, and for how long.
    snapshots_per_company: int = Field(default=10, ge=1)
    snapshots_max_age_seconds: StreamMaxAge = 90 * 24 * 3600
    # HUB_DEAD_LETTERS: the newest N kept per consumer and firm, and for how long (0 =
    # forever). Each is a copy: the message stays in its own stream for as long as that
    # stream's limits keep it.
    dead_letters_per_firm: int = Field(default=1000, ge=1)
    dead_letters_max_age_seconds: StreamMaxAge = 90 * 24 * 3600
    # How long a fetcher may hold a refresh without reporting progress before another
    # fetcher gets it, and how often a refresh is delivered before it is given up.
    fetcher_ack_wait_seconds: float = Field(default=60, gt=0)
    fetcher_max_deliver: int = Field(default=8, ge=1)
    # The same for the gateway's read-model projections.
    projection_ack_wait_seconds: float = Field(default=30, gt=0)
    projection_max_deliver: int = Field(default=10, ge=1)
    # A failed message waits this long before its redelivery, doubling each time up to the max.
    retry_delay_seconds: float = Field(default=1.0, gt=0)
    retry_max_delay_seconds: float = Field(default=60.0, gt=0)
    # How long a BC request slot stays taken when the fetcher holding it dies (a lease in NATS
    # KV). A live fetcher renews its leases every third of this while its requests run.
    bc_slot_lease_seconds: float = Field(default=15.0, ge=3)
    # How many copies of each stream and bucket a NATS cluster keeps: 3 survives losing one
    # node, 5 two. A single nats-server (``hub up``, the tests) can keep only 1. An even
    # count survives no more than the odd count below it, so it is refused.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # The lease that lets exactly one replica of the registry (and of invitations) relay its
    # outbox and run schedules: a replica that dies loses it this long after its last renewal.
    leader_lease_seconds: float = Field(default=10.0, ge=2, le=120)

    # Where the hub's app identity is issued and where Business Central answers. The sandbox
    # points both at itself; the production code path stays the same.
    entra_authority: str = "https://login.microsoftonline.com"
    bc_api: str = "https://api.businesscentral.dynamics.com"
    bc_web_client: str = "https://businesscentral.dynamics.com"
    entra_client_id: str = "00000000-0000-0000-0000-000000000000"
    entra_client_secret: SecretStr = SecretStr("")
    # Instead of the secret: a certificate registered on the app (PEM private key + its
    # SHA-1 thumbprint), which Entra prefers for production apps.
    entra_client_certificate_key: Path | None = None
    entra_client_certificate_thumbprint: str | None = None
    # A PEM bundle to trust for Entra and BC (the sandbox's own CA in dev). None: system store.
    ca_bundle: Path | None = None

    # Signs session cookies, invitation and Connect links (and dev tokens in dev mode).
    # Outside dev mode a service that signs anything refuses to start without a real one.
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # One key each, derived from it for one purpose (hub_common.purpose_keys; `hub derive-keys`
    # makes them): in production the fetcher, the registry and the invitations service get
    # only theirs, never the key that seals sign-ins. Unset: derived from HUB_SECRET_KEY.
    notification_key: SecretStr | None = None
    webhook_sealing_key: SecretStr | None = None
    invitation_link_key: SecretStr | None = None

    # Where Business Central posts change notices: the gateway's public HTTPS address plus
    # /webhooks/business-central. The fetcher subscribes each company there, and the
    # registry keeps every client read at least daily so the subscriptions are renewed.
    # Empty: no subscriptions; clients are read on their schedule only.
    notification_url: str = ""

    @field_validator("notification_url")
    @classmethod
    def _absolute_notification_url(cls, url: str) -> str:
        url = url.strip()
        if url and not (url.startswith(("https://", "http://")) and "?" not in url and "#" not in url):
            raise ValueError("HUB_NOTIFICATION_URL must be an absolute http(s) URL without a query, or empty")
        return url.rstrip("/")

    @field_validator("audit_max_age_seconds", "snapshots_max_age_seconds", "dead_letters_max_age_seconds")
    @classmethod
    def _kept_past_the_duplicate_window(cls, seconds: float) -> float:
        if 0 < seconds < STREAM_DUPLICATE_WINDOW_SECONDS:
            raise ValueError(
                f"a stream keeps messages forever (0) or at least {STREAM_DUPLICATE_WINDOW_SECONDS:.0f} s, "
                "its duplicate window"
            )
        return seconds

    @field_validator("stream_replicas")
    @classmethod
    def _odd_replica_count(cls, replicas: int) -> int:
        if replicas % 2 == 0:
            raise ValueError(f"{replicas} replicas survive no more lost nodes than {replicas - 1}: use 1, 3 or 5")
        return replicas

    @field_validator("notification_key", "webhook_sealing_key", "invitation_link_key")
    @classmethod
    def _a_derived_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and purpose_keys.decode(key.get_secret_value()) is None:
            raise ValueError(f"not a key made by `hub derive-keys` ({purpose_keys.KEY_BYTES} bytes, base64url)")
        return key

    def _own_key(self, purpose: purpose_keys.Purpose) -> SecretStr | None:
        return {
            purpose_keys.Purpose.NOTIFICATIONS: self.notification_key,
            purpose_keys.Purpose.WEBHOOK_SECRETS: self.webhook_sealing_key,
            purpose_keys.Purpose.INVITATION_LINKS: self.invitation_link_key,
        }[purpose]

    def key_for(self, purpose: purpose_keys.Purpose) -> bytes:
        """The key of ``purpose``: its own setting, or derived from HUB_SECRET_KEY."""
        own = self._own_key(purpose)
        if own is None:
            return purpose_keys.derive(self.secret_key.get_secret_value(), purpose)
        key = purpose_keys.decode(own.get_secret_value())
        assert key is not None  # checked when the settings were read
        return key

    def require_key_for(self, purpose: purpose_keys.Purpose) -> None:
        """Refuse to start without a real key for ``purpose``: its own, or a real HUB_SECRET_KEY."""
        if self._own_key(purpose) is not None:
            return
        try:
            self.require_secret_key()
        except InsecureSettings as error:
            raise InsecureSettings(f"{error} (or, for this service alone, {purpose_keys.SETTING[purpose]})") from None

    def require_secret_key(self) -> None:
        """Refuse to start with a guessable key: anyone could forge sessions and links."""
        if self.mode is Mode.DEV:
            return
        key = self.secret_key.get_secret_value()
        if key == DEV_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 8:
            raise InsecureSettings(
                f"HUB_SECRET_KEY must be set to a random value of at least {MIN_SECRET_KEY_LENGTH} characters"
                f" outside dev mode (HUB_MODE={self.mode.value}); the built-in default is public."
                " Make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )

    def require_nats_access(self) -> None:
        """Refuse NATS sign-in settings that cannot work, naming the setting, before connecting.

        A file that is missing or unreadable would otherwise surface as a connection that
        keeps failing (the client retries forever) or an anonymous sign-in the server refuses.
        """
        ways = {
            "HUB_NATS_CREDENTIALS_FILE": self.nats_credentials_file is not None,
            "HUB_NATS_NKEY_SEED_FILE": self.nats_nkey_seed_file is not None,
            "HUB_NATS_USER": bool(self.nats_user),
        }
        chosen = [name for name, is_set in ways.items() if is_set]
        if len(chosen) > 1:
            raise InsecureSettings(f"set one way to sign in to NATS, not {' and '.join(chosen)}")
        if bool(self.nats_user) != (self.nats_password_file is not None):
            raise InsecureSettings("HUB_NATS_USER and HUB_NATS_PASSWORD_FILE go together: set both or neither")
        if (self.nats_client_cert_file is None) != (self.nats_client_key_file is None):
            raise InsecureSettings(
                "HUB_NATS_CLIENT_CERT_FILE and HUB_NATS_CLIENT_KEY_FILE go together: set both or neither"
            )
        for setting, path in (
            ("HUB_NATS_CREDENTIALS_FILE", self.nats_credentials_file),
            ("HUB_NATS_NKEY_SEED_FILE", self.nats_nkey_seed_file),
            ("HUB_NATS_PASSWORD_FILE", self.nats_password_file),
            ("HUB_NATS_CA_FILE", self.nats_ca_file),
            ("HUB_NATS_CLIENT_CERT_FILE", self.nats_client_cert_file),
            ("HUB_NATS_CLIENT_KEY_FILE", self.nats_client_key_file),
        ):
            if path is not None and not _read_secret_file(setting, path):
                raise InsecureSettings(f"{setting}={path} is empty")
        if self.nats_credentials_file is not None:
            credentials = _read_secret_file("HUB_NATS_CREDENTIALS_FILE", self.nats_credentials_file)
            if "BEGIN NATS USER JWT" not in credentials or "BEGIN USER NKEY SEED" not in credentials:
                raise InsecureSettings(
                    f"HUB_NATS_CREDENTIALS_FILE={self.nats_credentials_file} is not a NATS .creds file"
                    " (a user JWT and its nkey seed, as `nsc generate creds` writes)"
                )
        if self.nats_nkey_seed_file is not None:
            seed = _read_secret_file("HUB_NATS_NKEY_SEED_FILE", self.nats_nkey_seed_file)
            if not seed.startswith("SU"):
                raise InsecureSettings(
                    f"HUB_NATS_NKEY_SEED_FILE={self.nats_nkey_seed_file} does not hold a user nkey seed"
                    " (SU..., as `nk -gen user` writes)"
                )

    def nats_password(self) -> str:
        """The password of HUB_NATS_USER, without the newline a file made by an editor ends with."""
        if self.nats_password_file is None:
            return ""
        return _read_secret_file("HUB_NATS_PASSWORD_FILE", self.nats_password_file)

    def nats_nkey_seed(self) -> str:
        """The user nkey seed of HUB_NATS_NKEY_SEED_FILE, without the file's final newline."""
        if self.nats_nkey_seed_file is None:
            return ""
        return _read_secret_file("HUB_NATS_NKEY_SEED_FILE", self.nats_nkey_seed_file)

    def nats_tls(self) -> ssl.SSLContext | None:
        """TLS to NATS when a CA or a client certificate is set; None leaves it to the URL's scheme."""
        if self.nats_ca_file is None and self.nats_client_cert_file is None:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.nats_ca_file) if self.nats_ca_file else None)
        except (OSError, ssl.SSLError) as error:
            raise InsecureSettings(f"HUB_NATS_CA_FILE={self.nats_ca_file} is not a PEM CA bundle: {error}") from None
        if self.nats_client_cert_file is not None and self.nats_client_key_file is not None:
            try:
                context.load_cert_chain(str(self.nats_client_cert_file), str(self.nats_client_key_file))
            except (OSError, ssl.SSLError) as error:
                raise InsecureSettings(
                    f"HUB_NATS_CLIENT_CERT_FILE={self.nats_client_cert_file} and HUB_NATS_CLIENT_KEY_FILE="
                    f"{self.nats_client_key_file} are not a PEM certificate and its key: {error}"
                ) from None
        return context

    def entra_credential(self) -> str | dict[str, str]:
        """What msal signs in with: the certificate when one is configured, else the secret."""
        if self.entra_client_certificate_key is not None:
            if not self.entra_client_certificate_thumbprint:
                raise ValueError("HUB_ENTRA_CLIENT_CERTIFICATE_THUMBPRINT must go with the certificate key")
            return {
                "private_key": self.entra_client_certificate_key.read_text(),
                "thumbprint": self.entra_client_certificate_thumbprint,
            }
        return self.entra_client_secret.get_secret_value()

    def tls_verification(self) -> ssl.SSLContext:
        """What every outgoing HTTPS client trusts: the configured bundle, else the system's."""
        if self.ca_bundle is not None:
            return ssl.create_default_context(cafile=str(self.ca_bundle))
        return ssl.create_default_context()

    @property
    def is_dev(self) -> bool:
        return self.mode in (Mode.DEV, Mode.TEST)

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.CONSOLE if self.is_dev else LogFormat.JSON


def _read_secret_file(setting: str, path: Path) -> str:
    """A file mounted from a Secret, stripped; unreadable is an error naming the setting, never the content."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise InsecureSettings(f"{setting}={path} cannot be read: {reason}") from None
