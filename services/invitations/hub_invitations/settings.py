from __future__ import annotations

from pydantic import Field, SecretStr

from hub_common.settings import HubSettings


class InvitationsSettings(HubSettings):
    service_name: str = "invitations"
    database_url: str = "sqlite:///.hub/invitations.db"
    # Where invitation mail leaves: the dev SMTP sink (`hub smtp-sink`) in dev, a relay in
    # production. Username and password are optional; STARTTLS is used when asked for.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "Accountant Hub <no-reply@accountant-hub.local>"
    # Where acceptance links point: the gateway's public address.
    public_url: str = "http://127.0.0.1:8000"
    invitation_lifetime_days: int = 14
    # Invitations mail anyone from the hub's sender, and any Entra tenant's administrator
    # can raise them: at most this many in 24 hours per client tenant, and per tenant and address.
    invitations_per_tenant_per_day: int = Field(default=50, ge=1, le=10_000)
    invitations_per_address_per_day: int = Field(default=5, ge=1, le=1_000)
    # An invitation whose mail could not be sent is retried this often (with a new link,
    # since only the hash of the old one was kept) until it is sent or expires.
    mail_retry_seconds: float = 60.0
