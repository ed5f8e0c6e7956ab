"""Every Prometheus metric of the hub, declared in one place (all named ``hub_…``).

Each process serves the ones it records on its operations port (``hub_common.operations``).
Labels stay bounded: outcomes, status classes, consumers, streams, routes; never a firm, a
company or a tenant. Per-company staleness is therefore a distribution (how many companies'
figures are how old), sampled from the gateway's read model, plus the oldest.

The names are documented in README.md and deploy/README.md ("Metrics"), and the Grafana
dashboard (deploy/grafana/accountant-hub.json) is tested against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub_common.events import FailureKind

# ------------------------------------------------------------------ fetcher

# How a refresh (one delivery of a refresh message) ended: every company read ("ok"), put
# off for a retry after a transient failure ("deferred"), or a failure kind. A refresh that
# read some companies and failed others counts under the first failure's kind.
REFRESH_OK = "ok"
REFRESH_DEFERRED = "deferred"
REFRESH_OUTCOMES = (REFRESH_OK, REFRESH_DEFERRED, *(kind.value for kind in FailureKind))

refresh_duration_seconds = Histogram(
    "hub_refresh_duration_seconds",
    "How long one refresh of a client took in the fetcher, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
refreshes_total = Counter("hub_refreshes", "Refreshes the fetcher ended, by outcome.", ["outcome"])

# Every answer Business Central gave the fetcher, by status class ("2xx" … "5xx"), or
# "no_answer" when none came (timeout, connection failed).
bc_responses_total = Counter("hub_bc_responses", "Answers from Business Central by status class.", ["status_class"])
# BC's throttling answers, counted on their own: 429 (too many requests) and 503 (busy or
# upgrading), each honoured with a backoff.
BC_THROTTLING_STATUSES = (429, 503)
bc_throttled_total = Counter("hub_bc_throttled", "Throttling answers (429, 503) from Business Central.", ["status"])

# ------------------------------------------------------------------ every consumer

consumer_lag_messages = Gauge(
    "hub_consumer_lag_messages",
    "Messages a durable consumer has not finished: not yet delivered plus delivered and unacknowledged.",
    ["consumer"],
)

# ------------------------------------------------------------------ registry, invitations

outbox_backlog_events = Gauge(
    "hub_outbox_backlog_events", "Events committed to an outbox and not yet published to JetStream.", ["outbox"]
)
# 1 on the replica that holds a role's lease (relays its outbox, runs its schedule), else 0:
# summed over replicas it must be exactly 1, except for a few seconds after a holder died.
lease_held = Gauge("hub_lease_held", "Whether this replica holds the role's lease (1) or not (0).", ["role"])

# ------------------------------------------------------------------ gateway

projection_lag_seconds = Histogram(
    "hub_projection_lag_seconds",
    "Seconds from an event's occurrence to the read model applying it, by stream.",
    ["stream"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
live_streams_open = Gauge("hub_live_streams_open", "Server-sent-event streams (open dashboard pages) on this gateway.")
http_request_duration_seconds = Histogram(
    "hub_http_request_duration_seconds",
    "Gateway HTTP requests by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# How old the figures shown for each company are: upper bounds of the distribution's buckets.
FIGURES_AGE_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0)


@dataclass(frozen=True)
class FiguresAge:
    """One sample of the read model: companies whose figures are at most each bucket old."""

    at_most: Sequence[int]  # one count per FIGURES_AGE_BUCKETS entry
    companies: int
    total_age_seconds: float
    oldest_seconds: float

    @classmethod
    def of(cls, ages: Sequence[float]) -> FiguresAge:
        return cls(
            at_most=[sum(1 for age in ages if age <= bound) for bound in FIGURES_AGE_BUCKETS],
            companies=len(ages),
            total_age_seconds=sum(ages),
            oldest_seconds=max(ages, default=0.0),
        )


class FiguresAgeCollector(Collector):
    """The latest staleness sample, as a gauge histogram (a distribution now, not a count of
    observations over time) and the oldest company's age.

    A Histogram would be wrong here: observing every company at every sample would count
    each company again and again.
    """

    def __init__(self) -> None:
        self._latest: FiguresAge | None = None

    def record(self, sample: FiguresAge) -> None:
        self._latest = sample

    def collect(self) -> Iterable[Metric]:
        sample = self._latest
        if sample is None:
            return
        counts = zip(FIGURES_AGE_BUCKETS, sample.at_most, strict=True)
        buckets = [(f"{bound:g}", float(count)) for bound, count in counts]
        yield GaugeHistogramMetricFamily(
            "hub_company_figures_age_seconds",
            "Companies by how old the figures shown for them are (sampled from the read model).",
            buckets=[*buckets, ("+Inf", float(sample.companies))],
            gsum_value=sample.total_age_seconds,
        )
        yield GaugeMetricFamily(
            "hub_company_figures_oldest_age_seconds",
            "Age of the oldest figures shown for any company.",
            value=sample.oldest_seconds,
        )


company_figures_age = FiguresAgeCollector()
REGISTRY.register(company_figures_age)


def show_fetcher_series() -> None:
    """Create the fetcher's labelled series at zero, so a rate is defined before the first
    event and a dashboard query finds them on a quiet hub."""
    for outcome in REFRESH_OUTCOMES:
        refreshes_total.labels(outcome=outcome)
        refresh_duration_seconds.labels(outcome=outcome)
    for status in BC_THROTTLING_STATUSES:
        bc_throttled_total.labels(status=str(status))
