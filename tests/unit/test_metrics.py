"""Staleness as Prometheus sees it: a distribution of the companies' figures ages, now."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub_common.metrics import FIGURES_AGE_BUCKETS, FiguresAge, FiguresAgeCollector


def _samples(collector: FiguresAgeCollector) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    exposition = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_each_bucket_counts_the_companies_at_most_that_old() -> None:
    minute, hour, day = 60.0, 3600.0, 86400.0
    sample = FiguresAge.of([30.0, 10 * minute, 2 * hour, 2 * day, 30 * day])
    assert dict(zip(FIGURES_AGE_BUCKETS, sample.at_most, strict=True)) == {
        minute: 1,
        5 * minute: 1,
        15 * minute: 2,
        hour: 2,
        6 * hour: 3,
        day: 3,
        7 * day: 4,
    }
    assert (sample.companies, sample.oldest_seconds) == (5, 30 * day)


def test_the_latest_sample_replaces_the_last_one() -> None:
    collector = FiguresAgeCollector()
    assert _samples(collector) == {}, "nothing is shown before the first sample"
    collector.record(FiguresAge.of([100.0, 200.0]))
    collector.record(FiguresAge.of([30.0]))
    samples = _samples(collector)
    assert samples[("hub_company_figures_age_seconds_bucket", "60")] == 1
    assert samples[("hub_company_figures_age_seconds_bucket", "+Inf")] == 1
    assert samples[("hub_company_figures_oldest_age_seconds", "")] == 30


def test_no_company_means_zero_everywhere() -> None:
    sample = FiguresAge.of([])
    assert (sample.companies, sample.oldest_seconds, sum(sample.at_most)) == (0, 0.0, 0)
