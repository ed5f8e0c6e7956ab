from __future__ import annotations

from hub_common.settings import HubSettings


class FetcherSettings(HubSettings):
    service_name: str = "fetcher"
    # Refresh messages one process works on at once (PullSub batch size).
    concurrency: int = 8
    http_connect_timeout_seconds: float = 10.0
    http_read_timeout_seconds: float = 60.0
    # A tenant's answer larger than this is refused as a bad response, not buffered.
    max_response_bytes: int = 50 * 1024 * 1024
    # BC's per-identity limits, which hold across all fetcher processes together.
    tenant_max_concurrent_requests: int = 5
    tenant_requests_per_window: int = 6000
    tenant_window_seconds: float = 300.0
    # Read cash and overdue totals from BC's Accountant Portal cue services where published.
    use_cue_services: bool = True
    # How many fetcher processes share each tenant's budget (hub up sets it to --fetchers).
    tenant_limit_share: int = 1
