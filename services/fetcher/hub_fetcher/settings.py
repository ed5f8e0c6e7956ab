from __future__ import annotations

from pydantic import Field

from hub_common.settings import HubSettings


class FetcherSettings(HubSettings):
    service_name: str = "fetcher"
    # Refresh messages one process keeps in flight; a new one is pulled as soon as any ends.
    # The work is waiting on Entra and BC, so hundreds fit; memory is the bound (a refresh
    # holds its companies' answers while it computes their figures).
    concurrency: int = Field(default=200, ge=1, le=5000)
    http_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # The longest wait for the next bytes of Entra's answers. BC's are bounded by their
    # request deadline alone: a $batch answer starts only once BC has run all of it.
    http_read_timeout_seconds: float = Field(default=60.0, gt=0)
    # Total deadlines: connecting, sending and reading the whole answer of one call to BC or
    # to Entra (a token or its discovery), and everything one refresh reads from BC. An
    # answer that trickles in a byte at a time ends as a timeout here, not after hours.
    bc_request_deadline_seconds: float = Field(default=120.0, gt=0)
    entra_request_deadline_seconds: float = Field(default=30.0, gt=0)
    refresh_deadline_seconds: float = Field(default=900.0, gt=0)
    # Everything one financial-statements request reads from BC: past the gateway's wait
    # (HUB_REPORT_TIMEOUT_SECONDS, 60 s by default) nobody waits for the answer, so reading
    # on would only hold a statements worker and the tenant's BC slots. Below that wait, so
    # the accountant hears BC's classified timeout, with its details, not that nobody answered.
    statements_deadline_seconds: float = Field(default=50.0, gt=0)
    # A tenant's answer larger than this is refused as a bad response, not buffered.
    max_response_bytes: int = 50 * 1024 * 1024
    # BC's per-identity limits, which hold across all fetcher processes together.
    tenant_max_concurrent_requests: int = 5
    tenant_requests_per_window: int = 6000
    tenant_window_seconds: float = 300.0
    # Read cash and overdue totals from BC's Accountant Portal cue services where published.
    use_cue_services: bool = True
    # BC webhooks (with HUB_NOTIFICATION_URL set): the most subscriptions the hub holds in one
    # client environment, out of BC's 200 shared by every app there (5 per company), and how
    # long before their 3-day expiry a refresh renews them: at least 45 hours, more than the
    # 40 the registry lets pass at most between two reads of a client while notifications
    # are on (its upkeep), or a subscription a read left alone could lapse before the next.
    notification_subscriptions_per_environment: int = Field(default=100, ge=5, le=200)
    notification_renew_before_seconds: float = Field(default=2 * 24 * 3600, ge=45 * 3600, le=3 * 24 * 3600)
