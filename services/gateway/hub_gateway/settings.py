from __future__ import annotations

from pathlib import Path

from pydantic import Field

from hub_common.settings import HubSettings
from hub_gateway.dashboard.health import HealthWeights
from hub_gateway.dashboard.live import SEND_WITHIN_SECONDS


class GatewaySettings(HubSettings):
    service_name: str = "gateway"
    database_url: str = "sqlite:///.hub/gateway.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # How long a command to an owning service may take before the API answers 503.
    command_timeout_seconds: float = 10.0
    # How long a company workbook waits for a fetcher to read the statements from BC.
    report_timeout_seconds: float = 60.0
    # How long Test Client URL waits for a fetcher's answer before returning a test id to poll.
    connection_test_wait_seconds: float = 20.0
    # How many events the projection applies per transaction.
    projection_batch_size: int = 200
    # How long one event of a live stream may take to leave for its page; a page that reads
    # nothing for longer is ended (dashboard/live.py SEND_WITHIN_SECONDS).
    live_send_within_seconds: float = Field(default=SEND_WITHIN_SECONDS, gt=0, le=600)
    # The address browsers reach the gateway at: sign-in redirects and email links use it.
    public_url: str = "http://127.0.0.1:8000"
    # Which accounts may sign in: "organizations" is any work or school account.
    sign_in_tenant: str = "organizations"
    # Where the dev SMTP sink keeps mail (`hub up` sets it); the dev mail page reads it.
    smtp_sink_dir: Path | None = None
    # How a company's health is weighed (dashboard/health.py); JSON, e.g. {"failure": 50}.
    health_weights: HealthWeights = HealthWeights()
