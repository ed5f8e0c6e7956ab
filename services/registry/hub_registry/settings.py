from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from hub_common.settings import HubSettings
from hub_registry.domain.refresh_schedule import LONGEST_INTERVAL, SHORTEST_INTERVAL, RefreshSchedule


class RegistrySettings(HubSettings):
    service_name: str = "registry"
    database_url: str = "sqlite:///.hub/registry.db"
    # A new firm's dashboard starts with this client (a sandbox tenant) until removed.
    sample_client_url: str | None = None
    sample_client_name: str = "Sample client (CRONUS)"
    # The schedule of a firm that has not set its own: every client refreshed this often
    # (15 minutes to a week); 0 turns it off for such firms.
    scheduled_refresh_seconds: int = 3600
    # How often the lease holder looks for clients whose schedule is due. At most a minute:
    # schedules go down to 15 minutes, and a client's slot is kept to within one check.
    schedule_check_seconds: float = Field(default=60.0, gt=0, le=60)
    # Business Central's change notices (HUB_NOTIFICATION_URL set): a company is refreshed at
    # most once per coalescing window however often it changes (the window's end catches the
    # changes within it); how often the lease holder looks for such waiting companies; and
    # how often a client is read at least, whatever its schedule, so its subscriptions
    # (3 days) are renewed in time.
    notification_coalesce_seconds: float = Field(default=30.0, ge=1, le=3600)
    notification_check_seconds: float = Field(default=2.0, gt=0, le=300)
    notification_upkeep_hours: int = Field(default=24, ge=1, le=24)
    # A colleague invitation mails anyone from the hub's sender, and anyone can start a firm:
    # at most this many addresses mailed per firm in 24 hours (an address once a day at most).
    colleague_invitations_per_firm_per_day: int = Field(default=50, ge=1, le=10_000)
    # ...and as many firms as anyone likes to start could each mail one address daily: an
    # address is mailed by at most this many firms in 24 hours.
    colleague_invitations_per_address_per_day: int = Field(default=3, ge=1, le=100)
    # A colleague invitation lets its address join for this many days after its last mail
    # (inviting the address again mails it again): a link forwarded or found in an old
    # mailbox months later must not bring a stranger into the firm.
    colleague_invitation_days: int = Field(default=30, ge=1, le=365)
    # How long resolving a tenant's domain to its id (Entra's OIDC discovery) may take.
    entra_discovery_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Entra answers every firm's tenant lookups (a Client URL tested or saved) from the hub's
    # one address and throttles them together: each firm may have it asked about at most this
    # many tenants it has not asked about within the hour, per registry process.
    tenant_lookups_per_firm_per_hour: int = Field(default=100, ge=1, le=100_000)
    # Test Client URL asks a fetcher to read the client's BC (sharing the tenant's limits with
    # every firm reading it) and keeps two events for good: at most this many per firm
    # within the hour, across the registry's replicas.
    connection_tests_per_firm_per_hour: int = Field(default=300, ge=1, le=100_000)
    # Alerts (hub_registry.service.alerts): how often the lease holder looks for rules on
    # time ("failing for more than Z hours") and for daily digests that are due.
    alert_check_seconds: float = Field(default=60.0, gt=0, le=3600)
    # A webhook URL must be https on a public address. Loopback (http or https) is allowed
    # only with this, for tests and `hub up`: anything else is server-side request forgery.
    alert_webhook_allow_loopback: bool = False
    # Each read of one POST to a webhook; the whole attempt ends within twice this. A
    # transient answer (5xx, 408, 429, no answer) is tried again after
    # alert_webhook_retry_seconds, doubling up to an hour, alert_webhook_max_attempts times.
    alert_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    alert_webhook_retry_seconds: float = Field(default=30.0, gt=0, le=3600)
    alert_webhook_max_attempts: int = Field(default=10, ge=1, le=50)

    @field_validator("scheduled_refresh_seconds")
    @classmethod
    def _a_schedule_that_can_be_kept(cls, seconds: int) -> int:
        if seconds != 0 and not SHORTEST_INTERVAL.total_seconds() <= seconds <= LONGEST_INTERVAL.total_seconds():
            raise ValueError(
                f"0 (off) or {SHORTEST_INTERVAL.total_seconds():.0f} to {LONGEST_INTERVAL.total_seconds():.0f} seconds"
            )
        return seconds

    def operator_schedule(self) -> RefreshSchedule:
        """The schedule of firms that have not set their own."""
        every = timedelta(seconds=self.scheduled_refresh_seconds) if self.scheduled_refresh_seconds else None
        return RefreshSchedule(every=every, quiet_hours=None)

    def upkeep_interval(self) -> timedelta | None:
        """How often every client is read at least while the hub subscribes to BC's notices."""
        return timedelta(hours=self.notification_upkeep_hours) if self.notification_url else None
