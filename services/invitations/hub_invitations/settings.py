from __future__ import annotations

from hub_common.settings import HubSettings


class InvitationsSettings(HubSettings):
    service_name: str = "invitations"
    database_url: str = "sqlite:///.hub/invitations.db"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    mail_from: str = "Accountant Hub <no-reply@accountant-hub.local>"
    # Where acceptance links point: the gateway's public address.
    public_url: str = "http://127.0.0.1:8000"
    invitation_lifetime_days: int = 14
